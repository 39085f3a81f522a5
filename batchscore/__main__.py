"""The `batchscore` program: signal handling first, so even a Ctrl-C during imports exits 130 cleanly."""

from batchscore import interrupts


def main() -> None:
    interrupts.install_for_process()
    try:
        from batchscore.cli import main as cli

        cli()
    finally:
        interrupts.ignore_during_teardown()


if __name__ == "__main__":
    main()
