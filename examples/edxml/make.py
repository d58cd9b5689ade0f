#!/usr/bin/env python3
"""Writes the example edXML packages of README.md ("edXML"):

  cong-van.edxml           an unsigned công văn from the department
                           (000.00.12.H56) to the district (000.00.31.H56)
                           with one PDF attachment, every element prefixed
                           edXML: as the national hub wants;
  cong-van-template.edxml  the same with an XML-signature template for
                           `xmlsec1 --sign` (C14N 1.0, RSA-SHA256);
  status-03.edxml          the district's status 03 (đã tiếp nhận) on it.

Run from anywhere: python3 examples/edxml/make.py
"""

import base64
import os

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
HERE = os.path.dirname(os.path.abspath(__file__))
DOCUMENT_ID = "000.00.12.H56,2026/12/02,215/KH-STC"


def e(name, *children, text=None):
    inner = "".join(children) if children else (text or "")
    return f"<edXML:{name}>{inner}</edXML:{name}>"


def organization(name, code, organ_name):
    return e(name, e("OrganId", text=code), e("OrganName", text=organ_name))


def pdf():
    body = b"%PDF-1.7\n% Ke hoach 215/KH-STC (example)\n%%EOF\n"
    return base64.encodebytes(body).decode()


def package(signature=""):
    header = e(
        "edXMLHeader",
        e(
            "MessageHeader",
            organization("From", "000.00.12.H56", "Sở Tài chính"),
            organization("To", "000.00.31.H56", "UBND huyện Diên Khánh"),
            e("DocumentId", text=DOCUMENT_ID),
            e("Code", e("CodeNumber", text="215"), e("CodeNotation", text="KH-STC")),
            e("PromulgationInfo", e("Place", text="Khánh Hòa"), e("PromulgationDate", text="2026/12/02")),
            e("DocumentType", e("Type", text="1"), e("TypeName", text="Kế hoạch")),
            e("Subject", text="Kế hoạch chuyển đổi số năm 2027"),
            e("SignerInfo", e("Competence", text="KT. GIÁM ĐỐC"), e("Position", text="Phó Giám đốc"), e("FullName", text="Nguyễn Văn An")),
            e("DueDate", text="2026/12/31"),
            e("OtherInfo", e("Priority", text="1"), e("SphereOfPromulgation", text="Toàn tỉnh")),
            e("SteeringType", text="1"),
        ),
        e(
            "TraceHeaderList",
            e("TraceHeader", e("OrganId", text="000.00.12.H56"), e("Timestamp", text="2026/12/02 08:15:00")),
            e("Bussiness", e("BussinessDocType", text="0")),
        ),
    )
    if signature:
        header = header.replace("</edXML:edXMLHeader>", signature + "</edXML:edXMLHeader>")
    body = e("edXMLBody", '<edXML:edXMLManifest version="1.0">' + e(
        "Reference",
        e("ContentId", text="cid:1"),
        e("ContentType", text="application/pdf"),
        e("AttachmentName", text="ke-hoach-215.pdf"),
    ) + "</edXML:edXMLManifest>")
    attachments = e("AttachmentEncoded", e(
        "Attachment",
        e("ContentId", text="cid:1"),
        e("AttachmentName", text="ke-hoach-215.pdf"),
        e("ContentType", text="application/pdf"),
        e("ContentTransferEncoded", text="\n" + pdf()),
    ))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<edXML:edXMLEnvelope xmlns:edXML="{NS}">\n{header}\n{body}\n{attachments}\n</edXML:edXMLEnvelope>\n'
    )


TEMPLATE = (
    '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo>'
    '<CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/>'
    '<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>'
    '<Reference URI=""><Transforms>'
    '<Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
    '<Transform Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/></Transforms>'
    '<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><DigestValue/></Reference>'
    "</SignedInfo><SignatureValue/><KeyInfo><X509Data/></KeyInfo></Signature>"
)

STATUS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    f'<edXML:edXMLEnvelope xmlns:edXML="{NS}">'
    + e(
        "edXMLHeader",
        e(
            "Status",
            e("ResponseFor", e("OrganId", text="000.00.12.H56"), e("Code", text="215/KH-STC"),
              e("PromulgationDate", text="2026/12/02"), e("DocumentId", text=DOCUMENT_ID)),
            organization("From", "000.00.31.H56", "UBND huyện Diên Khánh"),
            e("StatusCode", text="03"),
            e("Description", text="Đã tiếp nhận"),
            e("Timestamp", text="2026/12/02 09:30:00"),
            e("StaffInfo", e("Department", text="Văn phòng"), e("Staff", text="Lê Văn Cường"),
              e("Mobile", text="0905111222"), e("Email", text="vanthu@dienkhanh.example")),
        ),
    )
    + "<edXML:edXMLBody/></edXML:edXMLEnvelope>\n"
)

for name, text in (
    ("cong-van.edxml", package()),
    ("cong-van-template.edxml", package(TEMPLATE)),
    ("status-03.edxml", STATUS),
):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as out:
        out.write(text)
    print("wrote", os.path.join("examples/edxml", name))
