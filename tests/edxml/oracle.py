"""Independent XML-signature parties for the edXML tests.

  signxml-sign IN OUT KEY CERT...   signxml signs IN (enveloped, exclusive
                                    C14N, RSA-SHA256) at its
                                    <ds:Signature Id="placeholder"/>
  signxml-verify FILE CA_BUNDLE     signxml verifies FILE's signature
  lxml-sign IN OUT KEY CERT sha1|sha256
                                    signs the template Signature of IN,
                                    whatever its namespace (the edXML
                                    default namespace, as the VPCP sample
                                    has it), with libxml2's C14N through
                                    lxml and `openssl dgst`

Exit 0 on success; the reason on stderr otherwise.
"""

import base64
import hashlib
import subprocess
import sys

from lxml import etree


def signxml_sign(inp, out, key, certs):
    from signxml import XMLSigner, methods

    root = etree.parse(inp).getroot()
    signer = XMLSigner(
        method=methods.enveloped,
        signature_algorithm="rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
    )
    chain = [open(c, "rb").read().decode() for c in certs]
    signed = signer.sign(root, key=open(key, "rb").read(), cert=chain)
    with open(out, "wb") as f:
        f.write(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


def signxml_verify(path, bundle):
    from signxml import XMLVerifier

    data = open(path, "rb").read()
    XMLVerifier().verify(data, ca_pem_file=bundle)


def lxml_sign(inp, out, key, cert, digest):
    tree = etree.parse(inp)
    root = tree.getroot()
    signature = next(
        e for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "Signature"
    )
    ns = etree.QName(signature).namespace
    q = lambda name: "{%s}%s" % (ns, name)
    parent = signature.getparent()
    index = parent.index(signature)
    assert not (signature.tail or "").strip()
    tail = signature.tail
    parent.remove(signature)
    # The enveloped transform removes the element, not the text after it.
    if tail:
        if index == 0:
            parent.text = (parent.text or "") + tail
        else:
            previous = parent[index - 1]
            previous.tail = (previous.tail or "") + tail
    canonical = etree.tostring(tree, method="c14n")
    hasher = hashlib.sha1 if digest == "sha1" else hashlib.sha256
    signature.tail = None
    if tail:
        if index == 0:
            parent.text = parent.text[: -len(tail)]
        else:
            previous.tail = previous.tail[: -len(tail)]
        signature.tail = tail
    parent.insert(index, signature)
    signed_info = signature.find(q("SignedInfo"))
    signed_info.find(q("Reference")).find(q("DigestValue")).text = base64.b64encode(
        hasher(canonical).digest()
    ).decode()
    canonical_info = etree.tostring(signed_info, method="c14n")
    value = subprocess.run(
        ["openssl", "dgst", "-" + digest, "-sign", key],
        input=canonical_info,
        capture_output=True,
        check=True,
    ).stdout
    signature.find(q("SignatureValue")).text = base64.b64encode(value).decode()
    der = subprocess.run(
        ["openssl", "x509", "-in", cert, "-outform", "DER"], capture_output=True, check=True
    ).stdout
    signature.find(q("KeyInfo")).find(q("X509Data")).find(q("X509Certificate")).text = (
        base64.b64encode(der).decode()
    )
    tree.write(out, xml_declaration=True, encoding="UTF-8")


def main():
    command, args = sys.argv[1], sys.argv[2:]
    try:
        if command == "signxml-sign":
            signxml_sign(args[0], args[1], args[2], args[3:])
        elif command == "signxml-verify":
            signxml_verify(args[0], args[1])
        elif command == "lxml-sign":
            lxml_sign(*args)
        else:
            raise SystemExit("unknown command " + command)
    except Exception as error:  # the reason, for the test's message
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
