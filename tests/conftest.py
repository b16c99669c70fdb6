"""Shared fixtures.  Every I/O test has a deadline; timed logic runs on trio's MockClock."""
