"""The bench/ package lives beside fasttune at the repository root, outside the installed
package: make it importable for these tests (before Ray starts, so workers see it too)."""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
