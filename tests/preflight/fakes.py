"""Stand-ins for ``az``, ``pulumi``, ``docker`` and ``kubelogin``: real argument parsing (an unknown
flag or subcommand fails like the real CLI), answers from a JSON state file, every call recorded."""

FAKE_AZ = r'''#!PYTHON
import argparse, json, os, sys
with open(os.environ["CALLS"], "a") as log:
    log.write("az " + " ".join(sys.argv[1:]) + "\n")
state = json.load(open(os.environ["FAKE_STATE"]))


def out(parser):
    parser.add_argument("--output", "-o", choices=["json", "tsv", "none", "table"], default="json")
    return parser


p = argparse.ArgumentParser(prog="az")
groups = p.add_subparsers(dest="group", required=True)
out(groups.add_parser("version"))
account = groups.add_parser("account").add_subparsers(dest="cmd", required=True)
out(account.add_parser("show"))
out(account.add_parser("get-access-token"))
ra = groups.add_parser("role").add_subparsers(dest="cmd", required=True).add_parser("assignment")
ra_list = out(ra.add_subparsers(dest="sub", required=True).add_parser("list"))
ra_list.add_argument("--scope", required=True)
ra_list.add_argument("--include-inherited", action="store_true")
storage = groups.add_parser("storage").add_subparsers(dest="cmd", required=True)
sa = storage.add_parser("account").add_subparsers(dest="sub", required=True)
out(sa.add_parser("check-name")).add_argument("--name", required=True)
sa_show = out(sa.add_parser("show"))
sa_show.add_argument("--name", required=True)
sa_show.add_argument("--resource-group", required=True)
sc_show = out(storage.add_parser("container").add_subparsers(dest="sub", required=True).add_parser("show"))
sc_show.add_argument("--auth-mode", choices=["login", "key"], required=True)
sc_show.add_argument("--account-name", required=True)
sc_show.add_argument("--name", required=True)
acr = groups.add_parser("acr").add_subparsers(dest="cmd", required=True)
out(acr.add_parser("check-name")).add_argument("--name", required=True)
acr_show = out(acr.add_parser("show"))
acr_show.add_argument("--name", required=True)
acr_show.add_argument("--resource-group", required=True)
rest = out(groups.add_parser("rest"))
rest.add_argument("--method", choices=["get", "put", "post", "delete", "patch"], required=True)
rest.add_argument("--url", required=True)
kv = groups.add_parser("keyvault").add_subparsers(dest="cmd", required=True)
key_show = out(kv.add_parser("key").add_subparsers(dest="sub", required=True).add_parser("show"))
key_show.add_argument("--id", required=True)
a = p.parse_args()


def answer(value):
    print(json.dumps(value))
    sys.exit(0)


def fail(message):
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(1)


key = (a.group, getattr(a, "cmd", None), getattr(a, "sub", None))
acct = state.get("account")
if a.group == "version":
    answer({"azure-cli": "2.67.0"})
if acct is None:
    fail("Please run 'az login' to setup account.")
if key[:2] == ("account", "show"):
    answer(acct)
if key[:2] == ("account", "get-access-token"):
    import base64
    claims = base64.urlsafe_b64encode(json.dumps({"oid": state["object_id"]}).encode()).decode().rstrip("=")
    answer({"accessToken": f"eyJhbGciOiJub25lIn0.{claims}.sig", "subscription": acct["id"]})
if key == ("role", "assignment", "list"):
    answer([{**r, "principalId": r.get("principalId", state["object_id"])} for r in state.get("roles", [])])
if key == ("storage", "account", "check-name"):
    taken = a.name in state.get("taken", [])
    answer({"nameAvailable": not taken, "reason": "AlreadyExists" if taken else None,
            "message": f"The storage account named {a.name} is already taken." if taken else None})
if key == ("acr", "check-name", None):
    taken = a.name in state.get("taken", [])
    answer({"nameAvailable": not taken, "reason": "AlreadyExists" if taken else None,
            "message": f"The registry {a.name} is already in use." if taken else None})
if key in (("storage", "account", "show"), ("acr", "show", None)):
    sys.exit(0 if a.name in state.get("own", []) else 3)
if key == ("storage", "container", "show"):
    if f"{a.account_name}/{a.name}" in state.get("containers", []):
        answer({"name": a.name})
    fail(f"The specified container does not exist.")
if a.group == "rest":
    label = a.url.split("domainNameLabel=")[1].split("&")[0]
    answer({"available": label not in state.get("dns_taken", [])})
if key == ("keyvault", "key", "show"):
    if a.id in state.get("keys", []):
        answer({"key": {"kid": a.id}})
    fail(f"(Forbidden) The user, group or application does not have keys get permission.")
fail(f"fake az: no answer for {key}")
'''

FAKE_PULUMI = r'''#!PYTHON
import argparse, json, os, sys
with open(os.environ["CALLS"], "a") as log:
    log.write("pulumi " + " ".join(sys.argv[1:]) + "\n")
state = json.load(open(os.environ["FAKE_STATE"]))
p = argparse.ArgumentParser(prog="pulumi")
sub = p.add_subparsers(dest="cmd", required=True)
sub.add_parser("version")
sub.add_parser("whoami").add_argument("--verbose", "-v", action="store_true")
stack = sub.add_parser("stack").add_subparsers(dest="sub", required=True)
output = stack.add_parser("output")
output.add_argument("name")
output.add_argument("--stack", "-s", required=True)
a = p.parse_args()
if a.cmd == "version":
    print(state.get("pulumi_version", "v3.272.0"))
elif a.cmd == "whoami":
    print("User: ci\nBackend URL: azblob://pulumi-state")
elif a.cmd == "stack":
    outputs = state.get("outputs", {})
    if a.name not in outputs:
        print(f"error: current stack does not have output property '{a.name}'", file=sys.stderr)
        sys.exit(255)
    print(outputs[a.name])
'''

FAKE_DOCKER = r'''#!PYTHON
import argparse, json, os, sys
with open(os.environ["CALLS"], "a") as log:
    log.write("docker " + " ".join(sys.argv[1:]) + "\n")
state = json.load(open(os.environ["FAKE_STATE"]))
p = argparse.ArgumentParser(prog="docker")
buildx = p.add_subparsers(dest="cmd", required=True).add_parser("buildx")
buildx = buildx.add_subparsers(dest="sub", required=True)
buildx.add_parser("version")
buildx.add_parser("inspect").add_argument("name")
a = p.parse_args()
if a.sub == "version":
    print("github.com/docker/buildx v0.17.1")
else:
    builders = state.get("builders", {})
    if a.name not in builders:
        print(f"ERROR: no builder {a.name!r} found", file=sys.stderr)
        sys.exit(1)
    print(f"Name:   {a.name}\nDriver: {builders[a.name]}\n")
'''

FAKE_KUBELOGIN = r'''#!PYTHON
import argparse, os, sys
with open(os.environ["CALLS"], "a") as log:
    log.write("kubelogin " + " ".join(sys.argv[1:]) + "\n")
p = argparse.ArgumentParser(prog="kubelogin")
p.add_argument("--version", action="store_true", required=True)
p.parse_args()
print("kubelogin version\ngit hash: v0.1.6/abc\nGo version: go1.22")
'''
