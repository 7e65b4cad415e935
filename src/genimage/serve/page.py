"""The single page the service shows at ``/`` (with its script at ``/page.js``): generate from
a prompt or label with a progress bar fed by the job's server-sent events, a gallery with
downloads, cancel, inpainting with a mask drawn over an uploaded image, and replay of a
dropped genimage PNG from its record. It uses only the service's own JSON API (no external
scripts or styles, so it works offline) and inserts server text with ``textContent`` only.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>genimage</title>
<style>
 body { font: 15px system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
 fieldset { border: 1px solid #ccc; margin-bottom: 1em; }
 label { display: inline-block; margin: 0.3em 1em 0.3em 0; }
 input[type=text] { width: 28em; } input[type=number] { width: 5em; }
 #gallery figure { display: inline-block; margin: 4px; text-align: center; font-size: 12px; }
 #gallery img { width: 128px; height: 128px; image-rendering: pixelated; border: 1px solid #ddd; display: block; }
 #stage { position: relative; width: 256px; height: 256px; border: 1px solid #ccc; display: inline-block; }
 #stage canvas { position: absolute; left: 0; top: 0; width: 256px; height: 256px; image-rendering: pixelated; }
 #maskcanvas { cursor: crosshair; opacity: 0.55; }
 #drop { border: 2px dashed #aaa; padding: 1em; margin: 0.5em 0; color: #555; }
 #status { color: #555; } .error { color: #b00; } progress { width: 20em; }
</style></head>
<body>
<h1>genimage</h1>
<p id="tokenrow" hidden><label>API token <input type="password" id="token" autocomplete="off"></label></p>
<fieldset><legend>Model and sampling</legend>
 <label>model <select id="model"></select></label> <span id="cond"></span><br>
 <label>prompt or label <input type="text" id="prompt" placeholder="a red circle to the left of a blue square"></label><br>
 <label>negative <input type="text" id="negative"></label><br>
 <label>seed <input type="number" id="seed" value="0" min="0"></label>
 <label>images <input type="number" id="n" value="4" min="1"></label>
 <label>steps <input type="number" id="steps" placeholder="default" min="1"></label>
 <label>guidance <input type="number" id="guidance" step="0.5" placeholder="default" min="0"></label>
 <button id="go">Generate</button> <button id="cancel" disabled>Cancel</button>
</fieldset>
<p><progress id="bar" max="1" value="0"></progress> <span id="pct">0%</span> <span id="status"></span></p>
<div id="gallery"></div>
<fieldset><legend>Edit an image: draw over it to mark what to regenerate</legend>
 <label>image <input type="file" id="image" accept="image/*"></label>
 <button id="clearmask">Clear mask</button>
 <label>brush <input type="number" id="brush" value="2" min="1" max="64"></label><br>
 <div id="stage"><canvas id="imgcanvas"></canvas><canvas id="maskcanvas"></canvas></div><br>
 <label>strength <input type="number" id="strength" step="0.05" min="0.05" max="1" placeholder="0.6 / 1.0"></label>
 <label>extend L,T,R,B <input type="text" id="extend" style="width:8em"></label>
 <label>resample <input type="number" id="resample" value="1" min="1"></label>
 <label>upscale x <input type="number" id="upscale" min="2" placeholder="off"></label>
 <button id="edit">Edit (inpaints where drawn)</button>
</fieldset>
<fieldset><legend>Replay</legend>
 <div id="drop">Drop a genimage PNG here (or <input type="file" id="replayfile" accept="image/png">): the
 service regenerates it from its record and says whether the pixels match.</div>
</fieldset>
<script src="/page.js"></script>
</body></html>
"""

PAGE_JS = r"""'use strict';
const $ = (id) => document.getElementById(id);
let models = {}, current = null, maskDrawn = false;

function headers(extra) {
  const h = Object.assign({'X-Genimage': '1'}, extra || {});
  if ($('token').value) h['Authorization'] = 'Bearer ' + $('token').value;
  return h;
}
function say(text, isError) { $('status').textContent = text; $('status').className = isError ? 'error' : ''; }
function setProgress(p) { $('bar').value = p; $('pct').textContent = Math.round(p * 100) + '%'; }

async function loadModels() {
  const health = await (await fetch('/api/health')).json();
  if (health.token_required) $('tokenrow').hidden = false;
  const resp = await fetch('/api/models', {headers: headers()});
  if (!resp.ok) { say('enter the API token (this service needs one)', true); return; }
  say('');
  for (const m of await resp.json()) {
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
    seed: parseInt($('seed').value || '0', 10), n: parseInt($('n').value || '1', 10)};
  if (m && m.conditioning === 'class') { if (text) f.label = text; } else if (text) f.prompt = text;
  if ($('negative').value) f.negative = $('negative').value;
  if ($('steps').value) f.steps = parseInt($('steps').value, 10);
  if ($('guidance').value) f.guidance = parseFloat($('guidance').value);
  return f;
}

function showImages(job) {
  $('gallery').replaceChildren();
  for (const im of job.images) {
    const fig = document.createElement('figure');
    const img = document.createElement('img');
    img.src = 'data:image/png;base64,' + im.png_base64; img.title = JSON.stringify(im.record, null, 1);
    const a = document.createElement('a'); a.href = img.src; a.download = 'genimage-' + im.seed + '.png';
    a.className = 'download'; a.textContent = 'download seed ' + im.seed;
    fig.appendChild(img); fig.appendChild(a);
    if (im.match !== undefined) {
      const c = document.createElement('div'); c.className = 'match';
      c.textContent = im.match ? 'replay matches bit for bit' : 'replay differs'; fig.appendChild(c);
    }
    $('gallery').appendChild(fig);
  }
}

// Follow a job through its server-sent events (read with fetch, so the token header goes along).
async function follow(job) {
  current = job.id; $('cancel').disabled = false; setProgress(0);
  say(job.position ? 'queued (' + job.position + ' ahead)' : 'starting');
  const resp = await fetch('/api/jobs/' + job.id + '/events', {headers: headers()});
  const reader = resp.body.getReader(), dec = new TextDecoder();
  let buf = '', last = job;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buf += dec.decode(value, {stream: true});
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      if (!data) continue;
      last = JSON.parse(data);
      setProgress(last.progress);
      if (last.state === 'queued') say('queued (' + last.position + ' ahead)');
      else if (last.state === 'running') say('step ' + last.step + ' of ' + last.total);
    }
  }
  $('cancel').disabled = true; current = null;
  if (last.state === 'done') {
    showImages(last);
    say(last.images.length + ' image(s) in ' + last.seconds + ' s with ' + last.model +
        ' (each PNG carries its record: genimage replay FILE)' + (last.warnings.length ? '; ' + last.warnings.join('; ') : ''));
  } else {
    say(last.state + (last.reason ? ': ' + last.reason : ''), last.state === 'failed');
  }
}

async function start(url, init) {
  say('submitting...');
  const resp = await fetch(url, init);
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) { say(body.error || ('error ' + resp.status), true); return; }
  await follow(body);
}

$('model').onchange = showCond;
$('token').onchange = () => { $('model').replaceChildren(); models = {}; loadModels(); };
$('go').onclick = () => start('/api/jobs', {method: 'POST', headers: headers({'Content-Type': 'application/json'}),
                                            body: JSON.stringify(fields())});
$('cancel').onclick = async () => { if (current) await fetch('/api/jobs/' + current, {method: 'DELETE', headers: headers()}); };

// ---- editing: the uploaded image on one canvas, the mask drawn on another over it
let source = null;
$('image').onchange = () => {
  const file = $('image').files[0]; if (!file) return;
  const img = new Image();
  img.onload = () => {
    for (const id of ['imgcanvas', 'maskcanvas']) { $(id).width = img.naturalWidth; $(id).height = img.naturalHeight; }
    $('imgcanvas').getContext('2d').drawImage(img, 0, 0); clearMask(); source = file;
    URL.revokeObjectURL(img.src);
  };
  img.src = URL.createObjectURL(file);
};
function clearMask() {
  const c = $('maskcanvas'), g = c.getContext('2d'); g.clearRect(0, 0, c.width, c.height); maskDrawn = false;
}
$('clearmask').onclick = clearMask;
let drawing = false;
function paint(ev) {
  const c = $('maskcanvas'), r = c.getBoundingClientRect(), g = c.getContext('2d');
  const x = (ev.clientX - r.left) * c.width / r.width, y = (ev.clientY - r.top) * c.height / r.height;
  const s = parseInt($('brush').value || '2', 10);
  g.fillStyle = '#ff0080'; g.fillRect(Math.floor(x - s / 2), Math.floor(y - s / 2), s, s); maskDrawn = true;
}
$('maskcanvas').addEventListener('pointerdown', (ev) => { drawing = true; paint(ev); });
$('maskcanvas').addEventListener('pointermove', (ev) => { if (drawing) paint(ev); });
window.addEventListener('pointerup', () => { drawing = false; });
function maskBlob() {  // white = regenerate, black = keep, at the image's own size
  const c = $('maskcanvas'), out = document.createElement('canvas'); out.width = c.width; out.height = c.height;
  const src = c.getContext('2d').getImageData(0, 0, c.width, c.height), g = out.getContext('2d');
  const dst = g.createImageData(c.width, c.height);
  for (let i = 0; i < src.data.length; i += 4) {
    const v = src.data[i + 3] > 0 ? 255 : 0;
    dst.data[i] = dst.data[i + 1] = dst.data[i + 2] = v; dst.data[i + 3] = 255;
  }
  g.putImageData(dst, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, 'image/png'));
}
$('edit').onclick = async () => {
  if (!source) { say('choose an image to edit', true); return; }
  const form = new FormData(), f = fields();
  for (const k in f) form.append(k, f[k]);
  form.append('image', source);
  if (maskDrawn) form.append('mask', await maskBlob(), 'mask.png');
  if ($('strength').value) form.append('strength', $('strength').value);
  if ($('extend').value) form.append('extend', $('extend').value);
  if ($('resample').value && $('resample').value !== '1') form.append('resample', $('resample').value);
  if ($('upscale').value) form.append('upscale', $('upscale').value);
  await start('/api/jobs/edit', {method: 'POST', headers: headers(), body: form});
};

// ---- replay of a dropped PNG
async function replay(file) {
  const form = new FormData(); form.append('png', file);
  await start('/api/jobs/replay', {method: 'POST', headers: headers(), body: form});
}
$('drop').addEventListener('dragover', (ev) => ev.preventDefault());
$('drop').addEventListener('drop', (ev) => { ev.preventDefault(); if (ev.dataTransfer.files.length) replay(ev.dataTransfer.files[0]); });
$('replayfile').onchange = () => { if ($('replayfile').files.length) replay($('replayfile').files[0]); };
loadModels();
"""
