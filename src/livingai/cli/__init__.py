"""The `livingai` command line: inspect, replay and repair recorded runs over any store
URL (`pip install "livingai[cli]"`). Built on the public API only (`from livingai import
...`), with click for arguments and rich for tables, trees and progress."""

from .app import cli, main

__all__ = ["cli", "main"]
