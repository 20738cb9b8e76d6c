"""A local worker terminated mid-stage (Ctrl-C / SIGTERM of a run) leaves nothing that Python's resource tracker
reports after w2strust's last line: tqdm's default write lock, a multiprocessing semaphore created in each worker,
used to leak ("There appear to be 2 leaked semaphore objects to clean up at shutdown")."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import multiprocessing as mp, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from w2strust.engine.workers import init_local_worker

    def stage(i):
        from tqdm.auto import tqdm
        for n in tqdm(range(10_000), disable=False):  # a stage's progress bar, shown
            if n == 10:
                open(f"{sys.argv[1]}/bar-{i}", "w").close()
            time.sleep(0.01)

    if __name__ == "__main__":
        ctx = mp.get_context("spawn")
        slots = ctx.Queue()
        for i in range(2):
            slots.put(i)
        pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=init_local_worker,
                                   initargs=(slots, ["cpu", "cpu"], 1))
        futures = [pool.submit(stage, i) for i in range(2)]
        deadline = time.time() + 120
        while time.time() < deadline and not all(os.path.exists(f"{sys.argv[1]}/bar-{i}") for i in range(2)):
            time.sleep(0.1)  # until both bars are drawing
        for proc in list(pool._processes.values()):  # what LocalPoolExecutor.close(abort=True) does
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        print("w2strust: terminated", file=sys.stderr)
''')


def test_terminated_workers_leak_no_semaphore(tmp_path):
    script = tmp_path / "workers.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert (tmp_path / "bar-0").exists() and (tmp_path / "bar-1").exists(), proc.stderr[-800:]
    assert "leaked semaphore" not in proc.stderr, proc.stderr[-800:]
    assert proc.stderr.rstrip().endswith("w2strust: terminated"), proc.stderr[-800:]  # the last line is ours
