"""Mail through the local sendmail (Postfix or any MTA), standard library only.

The message is built with ``email.message.EmailMessage`` and handed to ``sendmail -t -oi``
on stdin with a timeout. The MTA queues and retries, so a mail made while the network is
still coming up is delivered later. A missing or failing sendmail raises MailError; callers
log it and carry on.
"""

import email.utils
import socket
import subprocess
from email.message import EmailMessage

from hgs.box.text import shown
from hgs.errors import MailError


def should_send(mail_settings, failed):
    """Returns True when MAIL['when'] asks for a mail for a run that ``failed`` (or not)."""
    return mail_settings.when == "always" or (mail_settings.when == "failure" and failed)


def build_message(mail_settings, subject, body):
    """Given MailSettings, a subject and a plain-text body, returns an EmailMessage."""
    message = EmailMessage()
    message["Subject"] = shown(f"{mail_settings.subject_tag} {subject}".strip())  # one header line, whatever it says
    message["From"] = mail_settings.from_addr
    message["To"] = ", ".join(mail_settings.to)
    message["Date"] = email.utils.formatdate(localtime=True)
    message["Message-ID"] = email.utils.make_msgid(domain=_domain())
    message["X-Mailer"] = "hgs"
    # 8bit keeps the log readable in any mailbox; only very long lines need quoted-printable
    long_lines = any(len(line) > 900 for line in body.splitlines())
    message.set_content(body, cte="quoted-printable" if long_lines else "8bit")
    return message


def send(mail_settings, subject, body):
    """Hands the mail to sendmail; raises MailError saying why it could not."""
    message = build_message(mail_settings, subject, body)
    command = [mail_settings.sendmail_path, "-t", "-oi"]
    try:
        result = subprocess.run(command, input=message.as_bytes(), capture_output=True,
                                timeout=mail_settings.timeout_s, check=False)
    except FileNotFoundError:
        raise MailError(f"no sendmail at {mail_settings.sendmail_path}: install an MTA "
                        "(apt install postfix) or set MAIL['sendmail_path']") from None
    except PermissionError:
        raise MailError(f"{mail_settings.sendmail_path} is not executable") from None
    except subprocess.TimeoutExpired:
        raise MailError(f"sendmail did not finish within {mail_settings.timeout_s:g} s") from None
    except OSError as err:
        raise MailError(f"cannot run {mail_settings.sendmail_path}: {err.strerror or err}") from None
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise MailError(f"sendmail exited with status {result.returncode}"
                        + (f": {detail[-1]}" if detail else ""))
    return message


def _domain():
    # gethostname, not getfqdn: a DNS lookup can hang while the network is down.
    return socket.gethostname() or "localhost"
