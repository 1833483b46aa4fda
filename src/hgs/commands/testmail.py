"""hgs testmail: send a test mail through the configured sendmail, with this run's log."""

import socket


def add_arguments(parser):
    pass


def run(ctx):
    from hgs.net import mail

    settings = ctx.settings
    run_log = ctx.start_log()
    log = run_log.logger
    log.info("test mail requested on %s (config %s)", socket.gethostname(), settings.source)
    log.info("mail goes to %s through %s", ", ".join(settings.mail.to), settings.mail.sendmail_path)
    body = ("This is a test mail from hgs. If you read it, hgs can reach you when the power fails.\n\n"
            f"Run {run_log.run_id} log:\n\n{run_log.text()}")
    mail.send(settings.mail, f"test mail from {socket.gethostname()} (run {run_log.run_id})", body)
    log.info("test mail handed to sendmail")
    ctx.out(f"test mail (run {run_log.run_id}) handed to {settings.mail.sendmail_path} for {', '.join(settings.mail.to)}")
    return 0
