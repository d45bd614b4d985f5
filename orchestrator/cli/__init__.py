"""The command line: argparse, rendering, demo."""
