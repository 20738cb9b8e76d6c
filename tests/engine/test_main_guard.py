"""Local workers are spawned and import the script that started them: a script calling w2strust with workers > 1
outside `if __name__ == "__main__":` is refused with its line, before any worker starts (engine/main_guard.py)."""

import subprocess
import sys
import textwrap

from w2strust.engine.main_guard import guarded_lines

PROBE = textwrap.dedent('''
    from w2strust.engine.main_guard import unguarded_call_site

    def where():
        return unguarded_call_site()

    print("top", where())

    def main():
        print("guarded", where())

    if __name__ == "__main__":
        main()
''')


def _python(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_guarded_lines_cover_the_main_block_only():
    source = textwrap.dedent('''
        import os
        x = 1
        if "__main__" == __name__:
            run(
                x)
        if __name__ == "__main__" and x:
            other()
        if __name__ == "__main__" or x:
            third()
    ''')
    assert guarded_lines(source) == {5, 6, 8}  # reversed and `and`-ed tests guard; an `or` does not


def test_call_site_found_at_top_level_and_not_under_the_guard(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    out = _python(str(script)).stdout.splitlines()
    assert out == [f"top ('{script}', 7)", "guarded None"]


def test_python_dash_m_package_is_not_reimported(tmp_path):
    pkg = tmp_path / "probepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("from w2strust.engine.main_guard import unguarded_call_site\n"
                                     "print('top', unguarded_call_site())\n")
    # multiprocessing skips a package's __main__ when it spawns, as `python -m w2strust` relies on
    assert _python("-m", "probepkg", cwd=tmp_path).stdout.strip() == "top None"


def test_unguarded_script_with_workers_is_refused_before_training(tmp_path, data_dir):
    script = tmp_path / "study.py"
    script.write_text(textwrap.dedent(f'''
        import w2strust

        w2strust.run("fairness", "smoke", seeds=[0], strategies=["no_tft"], data_dir={data_dir!r},
                     out={str(tmp_path / "run")!r}, workers=2)
    '''))
    res = _python(str(script))
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"w2strust.errors.W2SError: {script}, line 4: workers=2 starts processes")
    assert 'if __name__ == "__main__":' in last
    assert "died" not in res.stderr and not list((tmp_path / "run").glob("cache/*/meta.json"))


def test_property_registered_under_the_guard_is_named_in_the_worker_error(tmp_path, data_dir):
    script = tmp_path / "custom.py"
    script.write_text(textwrap.dedent(f'''
        import w2strust
        from w2strust.properties.fairness import Fairness

        class Renamed(Fairness):
            name = "fairness-renamed-in-guard"

        if __name__ == "__main__":
            w2strust.properties.register(Renamed)  # the workers import this script as __mp_main__: not run there
            w2strust.run("fairness-renamed-in-guard", "smoke", seeds=[0], strategies=["no_tft"],
                         data_dir={data_dir!r}, out={str(tmp_path / "run")!r}, workers=2)
    '''))
    res = _python(str(script))
    assert res.returncode == 1
    assert "unknown property 'fairness-renamed-in-guard'" in res.stderr
    assert "this is a worker process: register a property at the top level of your script" in res.stderr
