"""This box's own files and time: state, lock, events, history, progress, log, clock, file safety."""
