"""The `batchscore` program: signal handling first, so even a Ctrl-C during imports exits 130 cleanly."""

from batchscore import interrupts

OWN_PROCESS = {"own_process": True}  # what `run` may change process-wide (see cli.run)


def main() -> None:
    interrupts.install_for_process()
    try:
        from batchscore.cli import main as cli

        cli(obj=OWN_PROCESS)
    finally:
        interrupts.ignore_during_teardown()


if __name__ == "__main__":
    main()
