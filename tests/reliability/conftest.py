"""The NAT lab's fixtures, for the lab tests of this folder."""

from __future__ import annotations

from tests.lab.conftest import kamailio_lab, lab, lab_host, make_lab

__all__ = ["kamailio_lab", "lab", "lab_host", "make_lab"]
