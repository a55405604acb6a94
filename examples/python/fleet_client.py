#!/usr/bin/python3
"""Another service using Herd's Fleet API: list hosts and modules, set a config value, trigger
an action on every host. Uses only Debian packages (python3-grpcio, python3-protobuf) and the
protoc compiler: the message classes are generated from proto/ at start into a cache folder,
and calls go through grpc's generic channel methods, so no generated service stubs are needed.

    examples/python/fleet_client.py --controlplane 127.0.0.1:7070 --token-file DATA/viewer-token hosts
    ... --token-file DATA/operator-token set MODULE:KEY VALUE --selector env=prod
    ... --token-file DATA/operator-token action MODULE ACTION --param k=v
"""
import argparse
import hashlib
import importlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
PROTOS = ["herd/v1/types.proto", "herd/v1/agent.proto", "herd/v1/gateway.proto",
          "herd/v1/fleet.proto"]


def load_messages():
    """Generates (once per proto content) and imports herd.v1 message modules."""
    digest = hashlib.sha256()
    for p in PROTOS:
        with open(os.path.join(PROTO_DIR, p), "rb") as f:
            digest.update(f.read())
    out = os.path.join(tempfile.gettempdir(), "herd-py-" + digest.hexdigest()[:16])
    if not os.path.exists(os.path.join(out, "herd", "v1", "fleet_pb2.py")):
        os.makedirs(out, exist_ok=True)
        subprocess.run(["protoc", "-I", PROTO_DIR, "--python_out=" + out] + PROTOS, check=True)
    sys.path.insert(0, out)
    return importlib.import_module("herd.v1.fleet_pb2")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--controlplane", default=os.environ.get("HERD_CONTROLPLANE", "127.0.0.1:7070"))
    ap.add_argument("--token-file", default=os.environ.get("HERD_TOKEN_FILE"), required=False)
    ap.add_argument("--tls-ca", help="PEM CA of the control plane's certificate")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("hosts")
    m = sub.add_parser("modules")
    m.add_argument("module", nargs="?", default="")
    s = sub.add_parser("set")
    s.add_argument("target", help="MODULE:KEY")
    s.add_argument("value")
    s.add_argument("--selector")
    a = sub.add_parser("action")
    a.add_argument("module")
    a.add_argument("action")
    a.add_argument("--param", action="append", default=[])
    args = ap.parse_args()
    if not args.token_file:
        ap.error("--token-file (or HERD_TOKEN_FILE) is required: an API token of the control plane")

    import grpc  # Debian: python3-grpcio
    from google.protobuf import json_format

    fleet = load_messages()
    with open(args.token_file) as f:
        token = f.read().strip()
    if args.tls_ca:
        with open(args.tls_ca, "rb") as f:
            channel = grpc.secure_channel(args.controlplane, grpc.ssl_channel_credentials(f.read()))
    else:
        channel = grpc.insecure_channel(args.controlplane)
    metadata = [("authorization", "Bearer " + token)]

    def call(method, request, response_class):
        rpc = channel.unary_unary("/herd.v1.Fleet/" + method,
                                  request_serializer=lambda m: m.SerializeToString(),
                                  response_deserializer=response_class.FromString)
        try:
            return rpc(request, metadata=metadata, timeout=60)
        except grpc.RpcError as e:
            sys.exit("fleet_client: %s: %s" % (e.code().name, e.details()))

    if args.cmd == "hosts":
        resp = call("ListHosts", fleet.ListHostsRequest(), fleet.ListHostsResponse)
    elif args.cmd == "modules":
        resp = call("ListModules", fleet.ListModulesRequest(module=args.module),
                    fleet.ListModulesResponse)
    elif args.cmd == "set":
        module, _, key = args.target.partition(":")
        scope = fleet.Scope(selector=args.selector) if args.selector else fleet.Scope(**{"global": True})
        resp = call("SetConfig", fleet.FleetSetConfigRequest(scope=scope, module=module, key=key,
                                                              value=args.value),
                    fleet.FleetConfigChange)
    else:
        params = dict(p.split("=", 1) for p in args.param)
        resp = call("TriggerAction",
                    fleet.FleetActionRequest(target=fleet.Target(all=True), module=args.module,
                                             action=args.action, params=params),
                    fleet.FleetActionResponse)
    print(json.dumps(json_format.MessageToDict(resp, preserving_proto_field_name=True), indent=2))


if __name__ == "__main__":
    main()
