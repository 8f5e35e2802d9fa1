"""Entry point of the single-file executable built by ``make dist`` (PyInstaller)."""

from dgprov.cli import main

if __name__ == "__main__":
    main()
