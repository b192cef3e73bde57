"""Warnings that point at the user's line."""

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel():
    """The ``stacklevel`` of the first frame outside keras_patterns, seen from the caller.

    Pass it to ``warnings.warn`` so that the warning names the user's line however deep inside
    the package it is raised (constructors of subclasses, ``fit`` -> ``PatternComputer`` ->
    ``run_pass``, ...).
    """
    frame = sys._getframe(1)  # the function calling warnings.warn: stacklevel 1
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level

