"""An independent gRPC client for Lienthong, generated from our proto files
with grpcio-tools: sends a document as one agency, receives and acks it as
another, over real mTLS. Exits non-zero on any mismatch.

Usage: client.py ADDRESS CERTS_DIR PROTO_DIR CONTENT_FILE SIGNATURE_FILE
(the signature: a detached CMS over the content by the department's
organization signer, as its own signing tool would make it)
"""

import hashlib
import importlib
import os
import sys
import tempfile
import uuid

import grpc
from grpc_tools import protoc

try:
    from importlib.resources import files as resource_files
except ImportError:  # Python < 3.9
    resource_files = None


def generate(proto_dir, out_dir):
    well_known = str(resource_files("grpc_tools") / "_proto")
    protos = [
        os.path.join("lienthong", "v1", name)
        for name in ("signing.proto", "exchange.proto", "admin.proto")
    ]
    code = protoc.main([
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ])
    if code != 0:
        raise SystemExit(f"protoc failed with {code}")
    sys.path.insert(0, out_dir)


def channel(address, certs, who):
    def read(path):
        with open(os.path.join(certs, path), "rb") as handle:
            return handle.read()

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read("ca/root.crt"),
        private_key=read(f"agencies/{who}.key"),
        certificate_chain=read(f"agencies/{who}.crt"),
    )
    # The certificate names localhost; connect by address, check the name.
    options = [("grpc.ssl_target_name_override", "localhost")]
    return grpc.secure_channel(address, credentials, options=options)


def main():
    address, certs, proto_dir, content_file, signature_file = sys.argv[1:6]
    out_dir = tempfile.mkdtemp(prefix="lienthong-py-")
    generate(proto_dir, out_dir)
    pb = importlib.import_module("lienthong.v1.exchange_pb2")
    rpc = importlib.import_module("lienthong.v1.exchange_pb2_grpc")
    signing_pb = importlib.import_module("lienthong.v1.signing_pb2")

    with open(content_file, "rb") as handle:
        content = handle.read()
    with open(signature_file, "rb") as handle:
        signature = handle.read()
    message_id = f"py-{uuid.uuid4()}"
    envelope = pb.Envelope(
        message_id=message_id,
        to=["000.00.31.H56"],
        document=pb.Document(
            code=pb.DocumentCode(number="7", notation="CV-STC"),
            type="official-letter",
            subject="Thử liên thông bằng Python",
            priority=pb.PRIORITY_URGENT,
        ),
        attachments=[pb.Attachment(name="cong-van.txt", media_type="text/plain", content=content)],
        signatures=[pb.Signature(attachment="cong-van.txt", cms_der=signature)],
    )
    # `from` is a Python keyword: set it by name.
    setattr(envelope, "from", "000.00.12.H56")

    with channel(address, certs, "department") as sender:
        receipt = rpc.ExchangeStub(sender).Send(pb.SendRequest(envelope=envelope), timeout=30).receipt
        assert receipt.message_id == message_id, receipt
        assert not receipt.duplicate, receipt
        assert [r.code for r in receipt.recipients] == ["000.00.31.H56"], receipt
        assert receipt.attachments[0].sha256 == hashlib.sha256(content).hexdigest(), receipt
        assert receipt.verification == signing_pb.INDICATION_TOTAL_PASSED, receipt
        again = rpc.ExchangeStub(sender).Send(pb.SendRequest(envelope=envelope), timeout=30).receipt
        assert again.duplicate, again

        try:
            bad = pb.Envelope()
            bad.CopyFrom(envelope)
            del bad.to[:]
            rpc.ExchangeStub(sender).Send(pb.SendRequest(envelope=bad), timeout=30)
            raise SystemExit("an envelope without recipients was accepted")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
            assert "envelope.to" in error.details(), error.details()

    with channel(address, certs, "district") as receiver:
        stub = rpc.ExchangeStub(receiver)
        deliveries = list(stub.Receive(pb.ReceiveRequest(drain=True), timeout=30))
        mine = [d for d in deliveries if d.envelope.message_id == message_id]
        assert len(mine) == 1, deliveries
        delivery = mine[0]
        assert getattr(delivery.envelope, "from") == "000.00.12.H56"
        assert delivery.envelope.attachments[0].content == content
        assert delivery.envelope.document.priority == pb.PRIORITY_URGENT
        assert delivery.attempt == 1
        assert delivery.reports[0].indication == signing_pb.INDICATION_TOTAL_PASSED, delivery.reports
        assert delivery.reports[0].signer.agency == "000.00.12.H56", delivery.reports
        stub.Ack(pb.AckRequest(delivery_id=delivery.delivery_id), timeout=30)
        left = list(stub.Receive(pb.ReceiveRequest(drain=True), timeout=30))
        assert not [d for d in left if d.envelope.message_id == message_id], left

    print(f"interop ok: {message_id} sent, received and acked with grpcio {grpc.__version__}")


if __name__ == "__main__":
    main()
