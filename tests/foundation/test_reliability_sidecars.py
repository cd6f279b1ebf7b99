"""The XMP merge keeps what surrounds a photo tool's document (issue 15, item 14): the XML
declaration, the xpacket header and trailer with its padding, and processing instructions and
comments outside and inside the root element, byte for byte."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from engine.exchange.sidecar import NS
from engine.exchange.writeback import plan_sidecar

PADDING = (" " * 99 + "\n") * 20
PROLOG = ('\ufeff<?xml version="1.0" encoding="UTF-8"?>\n'
          '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
          '<?adobe-xap-filters esc="CRLF"?>\n<!-- written by a photo tool -->\n')
BODY = """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 6.0">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <?photo-tool keep="inside"?>
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
   <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>"""
EPILOG = "\n" + PADDING + '<?xpacket end="w"?>'


def test_merge_keeps_processing_instructions_and_padding(tmp_path):
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_bytes((PROLOG + BODY + EPILOG).encode("utf-8"))
    action = plan_sidecar(sidecar, ["cat"], [], {"cat": None})
    assert action is not None
    text = action.text
    assert text.startswith(PROLOG)                      # declaration, xpacket, PI, comment, BOM
    assert text.endswith(EPILOG)                        # the padding and the trailer
    assert '<?photo-tool keep="inside"?>' in text
    root = ET.fromstring(text[len(PROLOG):-len(EPILOG)])
    assert [li.text for li in root.iter(f"{{{NS['rdf']}}}li")][:2] == ["holiday", "cat"]


def test_merge_of_a_bare_document_stays_bare(tmp_path):
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(BODY + "\n", encoding="utf-8")
    text = plan_sidecar(sidecar, ["cat"], [], {"cat": None}).text
    assert text.startswith("<x:xmpmeta") and text.endswith("</x:xmpmeta>\n")
