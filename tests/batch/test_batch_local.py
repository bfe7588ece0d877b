"""``samurai batch`` on this machine: manifests, outputs equal to ``samurai track``, resuming,
the summary and exit codes, and `InferenceManager.process_batch`.

Real subprocesses (a pool of worker processes), image size 256, 2-3 frame videos.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

from batch.helpers import CLI, ENV, SIZE, journal, kill_a_worker_when, processes, run_cli, tree
from samurai.batch import JobOptions, load_manifest
from samurai.manager import InferenceManager


# ------------------------------------------------------------------------------- manifests
def test_jsonl_and_csv_manifests_give_the_same_jobs(videos: Path, tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text(
        "video,id,box,save,max_frames\n"
        f'{videos / "a.mp4"},,"20,25,36,30",,\n'
        f"{videos / 'b.mp4'},,21 25 36 30;0 0 20 20,all,\n"
        f'{videos / "c"},frames_c,"22,25,36,30",,1\n'
    )
    assert load_manifest(csv) == load_manifest(videos / "manifest.jsonl")
    jobs = load_manifest(csv, JobOptions(save=("boxes",)))
    assert [j.job_id for j in jobs] == ["a", "b", "frames_c"]
    assert jobs[0].options.save == ("boxes",)  # the batch default
    assert len(jobs[1].options.save) == 5 and len(jobs[1].boxes) == 2  # the line's own
    assert jobs[2].options.max_frames == 1 and jobs[2].video == str(videos / "c")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"video": "a.mp4"}', "nothing to track"),
        ('{"box": "1,2,3,4"}', "'video'"),
        ('{"video": "a.mp4", "box": "1,2,3"}', "malformed box"),
        ('{"video": "a.mp4", "box": "1,2,3,4", "colour": 1}', "unknown key 'colour'"),
        ('{"video": "a.mp4", "box": "1,2,3,4", "save": "gif"}', "unknown save gif"),
        ('{"video": "a.mp4", "box": "1,2,3,4", "max_frames": -1}', "max_frames must be >= 0"),
        ('{"video": "a.mp4", "box": "1,2,3,4", "id": "../x"}', "not a plain folder name"),
        ('{"video": "a.mp4", "box": "1,2,3,4"', "not JSON"),
        (
            '{"video": "a.mp4", "box": "1,2,3,4"}\n{"video": "x/a.mp4", "box": "1,2,3,4"}',
            "also on line 2",
        ),
    ],
)
def test_a_bad_manifest_is_refused_with_its_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text("# a comment\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"m\.jsonl:[23]: .*{message}") as info:
        load_manifest(path)
    assert "\n" not in str(info.value)


def test_cli_refuses_a_bad_manifest_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text('path,box\nclip.mp4,"1,2,3,4"\n')
    proc = run_cli("batch", path, "--out", tmp_path / "out", "--random-weights")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("samurai: error: ")
    assert "no 'video' column" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- outputs
def test_each_job_has_what_samurai_track_writes(
    pool_run, videos: Path, seeded_checkpoint: Path, tmp_path: Path
) -> None:
    proc, out = pool_run
    assert "3 done, 0 failed, 0 skipped" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "batch.jsonl", "frames_c"]
    # job b (two objects, every output) is byte for byte what samurai track writes
    single = tmp_path / "track"
    args = ["track", videos / "b.mp4", "--box", "21,25,36,30", "--box", "0,0,20,20", "--save"]
    proc = run_cli(*args, "all", "--out", single, "--checkpoint", seeded_checkpoint, *SIZE)
    assert proc.returncode == 0, proc.stderr
    assert tree(out / "b") == tree(single)
    assert len(list((out / "b" / "masks").iterdir())) == 3
    assert len((out / "frames_c" / "boxes_1.txt").read_text().splitlines()) == 2  # max_frames 1
    records = journal(out)
    assert records[0]["run"]["image_size"] == 256
    assert sorted(r["job"] for r in records[1:]) == ["a", "b", "frames_c"]
    assert all(r["status"] == "done" for r in records[1:])


def test_a_rerun_skips_finished_jobs_and_redoes_the_others(
    pool_run, videos: Path, seeded_checkpoint: Path, tmp_path: Path
) -> None:
    _, reference = pool_run
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    before = {p: p.stat().st_mtime_ns for p in (out / "b").rglob("*")}
    # job a was cut short: its outputs are .partial; a new job's video does not exist
    for name in ("boxes_1.txt", "masks.json"):
        path = out / "a" / name
        path.rename(path.with_name(name.replace(".", ".partial.")))
    manifest = tmp_path / "m.jsonl"
    lines = (videos / "manifest.jsonl").read_text()
    manifest.write_text(lines + json.dumps({"video": "gone.mp4", "box": "1,1,5,5"}) + "\n")
    manifest = manifest.rename(videos / "m_more.jsonl")  # relative paths: the videos' folder
    args = ["batch", manifest, "--out", out, "--checkpoint", seeded_checkpoint, *SIZE]
    proc = run_cli(*args)
    assert proc.returncode == 1, proc.stderr
    assert "1 done, 1 failed, 2 skipped" in proc.stdout
    assert "failed gone: " in proc.stdout and "gone.mp4" in proc.stdout
    assert tree(out) == tree(reference)  # a redone, b and frames_c untouched
    assert before == {p: p.stat().st_mtime_ns for p in (out / "b").rglob("*")}
    failed = [r for r in journal(out) if r.get("status") == "failed"]
    assert [r["job"] for r in failed] == ["gone"] and "gone.mp4" in failed[0]["reason"]
    # a run of other settings into the same folder is refused
    proc = run_cli("batch", manifest, "--out", out, "--checkpoint", seeded_checkpoint)
    assert proc.returncode == 2 and "other settings" in proc.stderr


def test_inference_manager_process_batch(
    pool_run, videos: Path, seeded_checkpoint: Path, tmp_path: Path
) -> None:
    _, reference = pool_run
    manager = InferenceManager("sam2.1_hiera_t", seeded_checkpoint, image_size=256)
    events = []
    summary = manager.process_batch(videos / "manifest.jsonl", tmp_path, progress=events.append)
    assert summary.ok and sorted(summary.done) == ["a", "b", "frames_c"]
    assert tree(tmp_path) == tree(reference)
    assert [e.finished for e in events] == [1, 2, 3]
    again = manager.process_batch(videos / "manifest.jsonl", tmp_path)
    assert again.done == () and sorted(again.skipped) == ["a", "b", "frames_c"]


def test_batch_help_and_manifest_errors_do_not_import_torch(tmp_path: Path) -> None:
    from test_cli_help import probe

    bad = tmp_path / "m.jsonl"
    bad.write_text('{"video": "a.mp4", "box": "1,2,3"}\n')
    report = probe(["batch", "--help"], ["batch", str(bad), "--out", str(tmp_path / "o")])
    assert [(code, torch_loaded) for _, code, torch_loaded in report] == [(0, False), (2, False)]


def test_a_killed_worker_process_gets_its_jobs_redone(
    pool_run, videos: Path, seeded_checkpoint: Path, tmp_path: Path
) -> None:
    _, reference = pool_run
    args = ["batch", videos / "manifest.jsonl", "--out", tmp_path, "--workers", "2"]
    args += ["--threads", "1", "--checkpoint", seeded_checkpoint, *SIZE]
    proc = subprocess.Popen(
        [*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    journal_file = tmp_path / "batch.jsonl"
    # one job done, two to go
    killed = kill_a_worker_when(
        proc, lambda: journal_file.exists() and len(journal_file.read_text().splitlines()) >= 2
    )
    stdout, stderr = proc.communicate(timeout=300)
    assert killed is not None, "the batch ended before a worker could be killed"
    assert proc.returncode == 0, stderr[-3000:]
    assert "3 done, 0 failed" in stdout and "a worker process died" in stderr
    assert sorted(r["job"] for r in journal(tmp_path)[1:]) == ["a", "b", "frames_c"]
    assert tree(tmp_path) == tree(reference)


def test_ctrl_c_stops_the_batch_with_130_and_says_how_to_resume(
    videos: Path, seeded_checkpoint: Path, tmp_path: Path
) -> None:
    # 24 jobs: still running when both workers are up, whatever the machine's load
    lines = [
        json.dumps({"video": str(videos / "a.mp4"), "id": f"a-{k}", "box": "20,25,36,30"}) + "\n"
        for k in range(24)
    ]
    (tmp_path / "many.jsonl").write_text("".join(lines))
    args = ["batch", tmp_path / "many.jsonl", "--out", tmp_path / "out", "--workers", "2"]
    args += ["--threads", "1", "--checkpoint", seeded_checkpoint, *SIZE]
    proc = subprocess.Popen(
        [*CLI, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,
        # as from a terminal: xdist workers, hence their children, start with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        table = processes()
        if sum(parent == proc.pid and "spawn_main" in cmd for parent, cmd in table.values()) == 2:
            break  # both workers started
        time.sleep(0.05)
    assert proc.poll() is None, "the batch ended before both workers were seen"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.endswith("samurai: interrupted; finished videos are kept, and the same "
                           "command again does the others\n")  # fmt: skip
    assert "Traceback" not in stderr and stdout == ""


class _CtrlCDuringSubmit(ProcessPoolExecutor):
    """A real pool that gets a real SIGINT while it starts its worker process."""

    def submit(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return super().submit(*args, **kwargs)


def test_ctrl_c_while_a_worker_starts_is_not_lost() -> None:
    from samurai.batch import executor

    pool = _CtrlCDuringSubmit(1, mp_context=get_context("spawn"))
    # Python's own Ctrl-C handler, as in a terminal (an xdist worker ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            executor._submit(pool, "task")
    finally:
        signal.signal(signal.SIGINT, previous)
        pool.shutdown(wait=True, cancel_futures=True)
