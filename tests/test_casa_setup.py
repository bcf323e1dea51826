"""radio_clean's CASA set-up: casatools works offline and logs into Python logging; import changes nothing."""

import os
import subprocess
import sys
import textwrap


def _run_python(code, cwd, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "CASASITECONFIG"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_offline_site_config_and_no_log_files(tmp_path, demo_ms_dir):
    result = _run_python(
        f"""
        import logging, os, sys
        logging.basicConfig(level=logging.INFO, format="%(name)s|%(levelname)s|%(message)s")
        import radio_clean.casa as casa
        print("BEFORE", "casatools" in sys.modules, os.environ.get("CASASITECONFIG"))
        # The bridge's first use sets CASA up, as in a task run by plain pipetask.
        info = casa.read_ms_info({str(demo_ms_dir / "3C273XC1.ms")!r})
        import casatools
        print("SITE", os.environ["CASASITECONFIG"])
        # A measures conversion needs the offline measures data (IERS tables, leap seconds).
        me = casatools.measures()
        epoch = me.epoch("UTC", "2020-01-01T00:00:00")
        print("TAI", me.measure(epoch, "TAI")["m0"]["value"])
        casa.forward_casa_log()
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "BEFORE False None" in result.stdout
    site = [line for line in result.stdout.splitlines() if line.startswith("SITE")][0]
    assert site.endswith(os.path.join("radio_clean", "casasiteconfig.py"))
    tai = float([line for line in result.stdout.splitlines() if line.startswith("TAI")][0].split()[1])
    # 37 leap seconds at 2020-01-01: TAI - UTC = 37 s.
    assert abs((tai - 58849.0) * 86400 - 37.0) < 1e-3
    # CASA's log reached Python logging under radio_clean.casa, and nothing went to files.
    assert "radio_clean.casa|INFO|msmetadata_cmpt.cc::open: Performing internal consistency" in result.stderr
    assert not [name for name in os.listdir(tmp_path) if name.startswith("casa") and name.endswith(".log")]
    # casacore's stale-leap-second-table banner is not printed to the console.
    assert "Leap second table TAI_UTC seems out-of-date" not in result.stderr


def test_user_site_config_is_respected(tmp_path):
    site = tmp_path / "mysite.py"
    site.write_text("import casadata\nmeasurespath = casadata.datapath\nlogfile = '/dev/null'\n")
    result = _run_python(
        "import os, radio_clean.casa as c; c.set_up_casa(); print('SITE', os.environ['CASASITECONFIG'])",
        tmp_path,
        {"CASASITECONFIG": str(site)},
    )
    assert result.returncode == 0, result.stderr
    # The last line: casatools may print about the data of a site configuration other than ours first.
    assert result.stdout.splitlines()[-1] == f"SITE {site}"


def test_casa_console_copies_are_dropped(tmp_path):
    result = _run_python(
        """
        import logging, os
        logging.basicConfig(level=logging.INFO, format="%(name)s|%(levelname)s|%(message)s")
        import radio_clean.casa as casa
        casatools = casa.set_up_casa()
        with casa.casa_log_forwarded():
            try:
                casatools.table().open("/no/such/table")
            except RuntimeError:
                pass
            os.write(2, b"not from casa\\n")
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    # Once, through Python logging; casatools' own timestamped console copy is gone.
    assert [line for line in lines if "/no/such/table" in line and "does not exist" in line] == [
        line for line in lines if line.startswith("radio_clean.casa|ERROR|") and "/no/such/table" in line
    ]
    assert any(line.startswith("radio_clean.casa|ERROR|") for line in lines)
    assert "not from casa" in lines


def test_forked_processes_forward_only_their_own_casa_messages(tmp_path):
    # pipetask forks quanta from one server process; two quanta side by side must not
    # forward each other's CASA messages, and the files go when the server exits.
    result = _run_python(
        """
        import logging, os, time
        logging.basicConfig(level=logging.INFO, format="%(name)s|%(levelname)s|%(process)d|%(message)s")
        import radio_clean.casa as casa
        casa.set_up_casa()
        import casatools

        children = []
        for name in ("first", "second"):
            pid = os.fork()
            if pid == 0:
                try:
                    casatools.table().open(f"/no/such/{name}/quantum")
                except RuntimeError:
                    pass
                time.sleep(0.5)  # both have logged before either forwards
                casa.forward_casa_log()
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        casa.forward_casa_log()
        print("LOGDIR", os.path.dirname(casa._log._forwarder._path))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    forwarded = [
        line.split("|", 3)
        for line in result.stderr.splitlines()
        if line.startswith("radio_clean.casa|") and "quantum" in line
    ]
    by_process = {pid: message for _, _, pid, message in forwarded}
    assert len(forwarded) == 2 and len(by_process) == 2, result.stderr
    assert sorted("first" in message for message in by_process.values()) == [False, True]
    assert sorted("second" in message for message in by_process.values()) == [False, True]
    log_dir = [line for line in result.stdout.splitlines() if line.startswith("LOGDIR")][0].split()[1]
    assert not os.path.exists(log_dir)


def test_casatasks_imported_task_by_task(tmp_path):
    # radio_clean imports tclean's helpers without casatasks' other tasks; a script that then uses
    # casatasks gets the tasks and the whole package as if it had imported it first.
    result = _run_python(
        """
        import logging, sys
        logging.basicConfig(level=logging.INFO, format="%(name)s|%(levelname)s|%(message)s")
        from radio_clean.casa._synthesis import preload_imager_helpers, tclean_defaults
        import radio_clean.casa as casa
        preload_imager_helpers()
        print("DEFAULT", tclean_defaults()["cyclefactor"])
        print("LOADED", "casatasks.applycal" in sys.modules, "casatasks.private.task_tclean" in sys.modules)
        from casatasks import applycal, tclean
        print("TASKS", type(tclean).__name__, type(applycal).__name__)
        import casatasks
        print("VERSION", casatasks.version_string())
        casatasks.casalog.post("hello from a script")
        # The helpers imported before the package was completed post to its casalog too.
        from casatasks.private.imagerhelpers import input_parameters
        input_parameters.casalog.post("hello from the imager helpers")
        casa.forward_casa_log()
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["DEFAULT"] == "1.0"
    assert lines["LOADED"] == "False True"
    assert lines["TASKS"] == "_tclean _applycal"
    assert lines["VERSION"].startswith("6.")
    # Completing the package kept CASA's log going to Python logging.
    assert "radio_clean.casa|INFO|::casa: hello from a script" in result.stderr
    assert "radio_clean.casa|INFO|::casa: hello from the imager helpers" in result.stderr
