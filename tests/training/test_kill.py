"""A real training process killed with SIGKILL inside a checkpoint write resumes to the
weights of an uninterrupted run, bit for bit, and its temporaries are cleaned at the next
start (the full suite, every family and many kills: scripts/reliability_kill.py)."""

from __future__ import annotations

from kill_harness import run_campaign, start_reference


def test_kill_9_inside_a_checkpoint_write_then_resume_is_bit_identical(tmp_path):
    reference = start_reference("diffusion", tmp_path / "reference", steps=12, keep=1)  # runs beside the campaign
    c = run_campaign("diffusion", tmp_path, kills=1, steps=12, keep=1, reference=tmp_path / "reference",
                     reference_proc=reference, log=lambda m: None)
    assert c.failures == []
    assert c.kills == 1 and c.in_save == 1 and c.valid_after_kill == 1
    assert c.stale_cleaned == 1 and c.stale_left == 0  # the killed save's .tmp-step-* folder was removed
    assert c.identical
