"""``python -m twinshot ...``: the command line (what ``torchrun -m twinshot train ...`` runs
in each process)."""

from twinshot.cli.main import main

if __name__ == "__main__":
    main()
