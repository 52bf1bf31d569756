"""Read one Open-i (Indiana University chest X-ray collection) report file.

Each study of the collection is one XML file (`ecgen-radiology/<uid>.xml`): the study id in
`<uId id="CXR<uid>"/>`, the report sections in `<AbstractText Label="FINDINGS">` (also IMPRESSION,
INDICATION, COMPARISON), the images in `<parentImage id="CXR<uid>_IM-....-....">` and the MeSH terms in
`<MeSH><major>` / `<MeSH><automatic>`. `read_openi_report(path)` returns them as an `OpenIReport`;
a file that is not well-formed XML or has no study id raises `OpenIError` naming the file.

The standard library's ElementTree parses the files: they are small, local and have no DTD.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from txtrayalign.errors import InputError

_UID = re.compile(r"^\s*CXR(\d+)\s*$")


class OpenIError(InputError):
    """An Open-i report file that cannot be read: the message names the file and the problem."""


@dataclass(frozen=True)
class OpenIReport:
    """One Open-i study.

    `sections` maps lower-case section names (`comparison`, `indication`, `findings`, `impression`)
    to their whitespace-normalised text; a missing or empty section is absent. `images` are the
    `parentImage` ids in file order; `mesh_major` / `mesh_automatic` the MeSH terms in file order.
    """

    uid: int
    path: str
    sections: dict[str, str] = field(default_factory=dict)
    images: tuple[str, ...] = ()
    mesh_major: tuple[str, ...] = ()
    mesh_automatic: tuple[str, ...] = ()


def _normalise(text: str | None) -> str:
    return " ".join((text or "").split())


def read_openi_report(path: str | os.PathLike) -> OpenIReport:
    """The sections, image ids and MeSH terms of one Open-i XML report (see the module docstring)."""
    name = os.fspath(path)
    try:
        root = ET.parse(name).getroot()
    except ET.ParseError as exc:
        raise OpenIError(f"{name}: not well-formed XML ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise OpenIError(f"{name}: not readable as XML text ({exc.reason} at byte {exc.start})") from exc
    uid_node = root.find(".//uId")
    uid_text = uid_node.get("id", "") if uid_node is not None else ""
    m = _UID.match(uid_text)
    if m is None:
        what = "no <uId id=...> element" if uid_node is None else f"study id {uid_text!r} is not CXR<number>"
        raise OpenIError(f"{name}: {what}")
    sections: dict[str, str] = {}
    for node in root.iter("AbstractText"):
        label = _normalise(node.get("Label")).lower()
        text = _normalise("".join(node.itertext()))
        if label and text:
            sections[label] = f"{sections[label]} {text}" if label in sections else text
    images = tuple(i for i in (_normalise(n.get("id")) for n in root.iter("parentImage")) if i)
    mesh_major: list[str] = []
    mesh_automatic: list[str] = []
    for mesh in root.iter("MeSH"):
        mesh_major += [t for t in (_normalise(n.text) for n in mesh.iter("major")) if t]
        mesh_automatic += [t for t in (_normalise(n.text) for n in mesh.iter("automatic")) if t]
    return OpenIReport(uid=int(m.group(1)), path=name, sections=sections, images=images,
                       mesh_major=tuple(mesh_major), mesh_automatic=tuple(mesh_automatic))
