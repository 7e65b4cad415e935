"""The single page the service shows at ``/``: generate from a prompt or label, or edit an
uploaded image, with the service's own JSON API (no external scripts or styles)."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>genimage</title>
<style>
 body { font: 15px system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
 fieldset { border: 1px solid #ccc; margin-bottom: 1em; }
 label { display: inline-block; margin: 0.3em 1em 0.3em 0; }
 input[type=text] { width: 28em; } input[type=number] { width: 5em; }
 #out img { width: 128px; height: 128px; image-rendering: pixelated; margin: 4px; border: 1px solid #ddd; }
 #status { color: #555; } .error { color: #b00; }
</style></head>
<body>
<h1>genimage</h1>
<fieldset><legend>Model and sampling</legend>
 <label>model <select id="model"></select></label> <span id="cond"></span><br>
 <label>prompt or label <input type="text" id="prompt" placeholder="a red circle to the left of a blue square"></label><br>
 <label>negative <input type="text" id="negative"></label><br>
 <label>seed <input type="number" id="seed" value="0"></label>
 <label>images <input type="number" id="n" value="4" min="1"></label>
 <label>steps <input type="number" id="steps" placeholder="default"></label>
 <label>guidance <input type="number" id="guidance" step="0.5" placeholder="default"></label>
 <button id="go">Generate</button>
</fieldset>
<fieldset><legend>Edit an image</legend>
 <label>image <input type="file" id="image" accept="image/*"></label>
 <label>mask (white = regenerate) <input type="file" id="mask" accept="image/*"></label><br>
 <label>strength <input type="number" id="strength" step="0.05" min="0.05" max="1" placeholder="0.6 / 1.0"></label>
 <label>extend L,T,R,B <input type="text" id="extend" style="width:8em"></label>
 <label>resample <input type="number" id="resample" value="1" min="1"></label>
 <label>upscale x <input type="number" id="upscale" min="2" placeholder="off"></label>
 <button id="edit">Edit</button>
</fieldset>
<p id="status"></p><div id="out"></div>
<script>
const $ = (id) => document.getElementById(id);
let models = {};
async function loadModels() {
  const list = await (await fetch('/api/models')).json();
  for (const m of list) {
    models[m.name] = m;
    const o = document.createElement('option'); o.value = m.name; o.textContent = m.name; o.selected = m.default;
    $('model').appendChild(o);
  }
  showCond();
}
function showCond() {
  const m = models[$('model').value]; if (!m) return;
  $('cond').textContent = m.conditioning === 'text' ? 'text prompt' :
    m.conditioning === 'class' ? 'label: ' + m.classes.join(' ') : 'unconditional';
}
function fields() {
  const m = models[$('model').value], text = $('prompt').value, f = {model: $('model').value,
    seed: parseInt($('seed').value || '0'), n: parseInt($('n').value || '1')};
  if (m.conditioning === 'class') { if (text) f.label = text; } else if (text) f.prompt = text;
  if ($('negative').value) f.negative = $('negative').value;
  if ($('steps').value) f.steps = parseInt($('steps').value);
  if ($('guidance').value) f.guidance = parseFloat($('guidance').value);
  return f;
}
async function show(resp) {
  const body = await resp.json();
  if (!resp.ok) { $('status').innerHTML = '<span class="error">' + (body.error || JSON.stringify(body)) + '</span>'; return; }
  $('status').textContent = body.images.length + ' image(s) in ' + body.seconds + ' s with ' + body.model +
    ' (each PNG carries its record: genimage replay FILE)';
  $('out').innerHTML = '';
  for (const im of body.images) {
    const a = document.createElement('a'); a.href = 'data:image/png;base64,' + im.png_base64;
    a.download = 'genimage-' + im.seed + '.png';
    const img = document.createElement('img'); img.src = a.href; img.title = JSON.stringify(im.record, null, 1);
    a.appendChild(img); $('out').appendChild(a);
  }
}
$('model').onchange = showCond;
$('go').onclick = async () => {
  $('status').textContent = 'generating...';
  show(await fetch('/api/generate', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                     body: JSON.stringify(fields())}));
};
$('edit').onclick = async () => {
  if (!$('image').files.length) { $('status').innerHTML = '<span class="error">choose an image to edit</span>'; return; }
  const form = new FormData(), f = fields();
  for (const k in f) form.append(k, f[k]);
  form.append('image', $('image').files[0]);
  if ($('mask').files.length) form.append('mask', $('mask').files[0]);
  if ($('strength').value) form.append('strength', $('strength').value);
  if ($('extend').value) form.append('extend', $('extend').value);
  form.append('resample', $('resample').value || '1');
  if ($('upscale').value) form.append('upscale', $('upscale').value);
  $('status').textContent = 'editing...';
  show(await fetch('/api/edit', {method: 'POST', body: form}));
};
loadModels();
</script>
</body></html>
"""
