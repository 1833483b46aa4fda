"""Mail through a REAL Postfix, and the failures that must never crash a run."""

import re

from hgs.config import MailSettings
from hgs.net import mail
from harness import run_hgs, write


def test_testmail_is_delivered_by_real_postfix_with_the_run_log(postfix, make_config):
    config = make_config(extra="MAIL = {'to': ['root'], 'from': 'hgs', 'subject_tag': '[hgs-test]'}\n")
    result = run_hgs("testmail", "--config", str(config))
    assert result.returncode == 0, result.stderr
    run_id = re.search(r"run (\d{8}-\d{6}-[0-9a-f]{4})", result.stdout).group(1)
    message = postfix.wait_for_text(f"run {run_id}")
    assert "Subject: [hgs-test] test mail from" in message
    assert f"{run_id} INFO    test mail requested" in message  # the run's log is in the body
    assert "X-Mailer: hgs" in message


def _settings(sendmail_path):
    return MailSettings(to=("root",), from_addr="hgs", sendmail_path=str(sendmail_path), subject_tag="[t]",
                        when="always", timeout_s=2)


def test_missing_sendmail_is_a_clear_error_exit_1(make_config, tmp_path):
    config = make_config(extra=f"MAIL = {{'sendmail_path': '{tmp_path}/no-sendmail'}}\n")
    result = run_hgs("testmail", "--config", str(config))
    assert result.returncode == 1
    assert "no sendmail at" in result.stderr and "install an MTA" in result.stderr
    assert "Traceback" not in result.stderr
    # the run's log file still has what happened
    assert "no sendmail at" in (tmp_path / "log" / "hgs.log").read_text()


def test_failing_sendmail_reports_its_status_and_message(tmp_path):
    fake = write(tmp_path / "sendmail", "#!/bin/sh\ncat >/dev/null\necho 'queue file write error' >&2\nexit 75\n", 0o755)
    try:
        mail.send(_settings(fake), "s", "b")
    except Exception as err:
        assert "exited with status 75: queue file write error" in str(err)
    else:
        raise AssertionError("a failing sendmail must raise MailError")


def test_hanging_sendmail_is_cut_by_the_timeout(tmp_path):
    fake = write(tmp_path / "sendmail", "#!/bin/sh\nexec sleep 30\n", 0o755)
    try:
        mail.send(_settings(fake), "s", "b")
    except Exception as err:
        assert "did not finish within 2 s" in str(err)
    else:
        raise AssertionError("a hanging sendmail must raise MailError")


def test_message_headers_and_body(tmp_path):
    message = mail.build_message(_settings("/x"), "site down", "summary\n\nfull log")
    assert message["Subject"] == "[t] site down" and message["To"] == "root"
    assert message.get_content().startswith("summary")


def test_should_send_follows_when():
    for when, ok, failed in (("always", True, True), ("failure", False, True), ("never", False, False)):
        settings = MailSettings(("root",), "hgs", "/x", "[t]", when, 1)
        assert mail.should_send(settings, failed=False) is ok
        assert mail.should_send(settings, failed=True) is failed
