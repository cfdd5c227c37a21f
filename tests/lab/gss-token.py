#!/usr/bin/python3
"""MIT's own constrained delegation, as a reference for kcdscope's client (differential tests).

    /usr/bin/python3 tests/lab/gss-token.py LAB_ENV USER SPN [--mech spnego|krb5] [--url URL]

Works against either lab (tests/lab/mit-kdc.sh up, tests/lab/samba-ad.sh up): reads the
lab's lab.env, acquires the service account's credentials with its password (from
LAB_SVC_PASSWORD_FILE, by gss_acquire_cred_with_password into memory; --kinit: by kinit
into a private ccache), impersonates USER (S4U2Self), creates a security context for SPN
(S4U2Proxy) and prints the base64 initial token on stdout, one line.
With --url it then sends `GET URL` with `Authorization: Negotiate <token>` and prints
    HTTP_STATUS=<code>
    MUTUAL_AUTH=ok|failed: ...|none    (the server's Negotiate token, fed back to the context)
    <empty line>
    <response body>
Diagnostics (names, errors) go to stderr. Exit status: 0 when the token was made (and, with
--url, the HTTP exchange happened, whatever its status); 3 on a GSSAPI failure; 4 on an
HTTP failure; 2 on bad usage or a broken lab.env.

USER: `alice` or `alice@LAB.TEST` (NT-PRINCIPAL), `alice@lab.test` (a UPN: NT-ENTERPRISE);
--name-type overrides the guess. SPN: `HTTP/exchange.lab.test` (a Kerberos principal name)
or `HTTP@exchange.lab.test` (a GSS host-based service name).

It has to run inside the lab's client namespace (LAB_NS), where the KDC addresses and
exchange.lab.test resolve; if started elsewhere it re-executes itself there with
`ip netns exec` (root needed). KRB5_CONFIG is the lab's LAB_KRB5_CONF unless --krb5-conf;
KRB5CCNAME is always a fresh private ccache, so no default ccache can leak in.

Pitfall (measured in the Samba lab): the impersonated credential must be acquired for the
mechanism the context uses. impersonate() for krb5 only + a SPNEGO context makes MIT's SPNEGO
ignore it and fall back to the default ccache, so the token silently names the service
account. This script impersonates for the context's own mech (--impersonate-mech krb5
reproduces the pitfall on purpose; with the password credential the fallback finds an empty
private ccache, so the pitfall fails instead of naming the service account -- use --kinit to
see the wrong identity).
"""
import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

KRB5_OID = "1.2.840.113554.1.2.2"
SPNEGO_OID = "1.3.6.1.5.5.2"
ENTERPRISE_OID = "1.2.840.113554.1.2.2.6"  # GSS_KRB5_NT_ENTERPRISE_NAME


def die(msg, code=2):
    print("gss-token: %s" % msg, file=sys.stderr)
    sys.exit(code)


def read_env(path):
    env = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                k, v = line.split("=", 1)
                if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                    v = v[1:-1]
                env[k] = v
    except OSError as e:
        die("cannot read %s: %s" % (path, e))
    return env


def in_netns(ns):
    """True when this process already runs in the named network namespace."""
    try:
        a = os.stat("/proc/self/ns/net")
        b = os.stat("/run/netns/%s" % ns)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lab_env", help="the lab's lab.env")
    ap.add_argument("user", help="user to impersonate: alice, alice@LAB.TEST or a UPN alice@lab.test")
    ap.add_argument("spn", help="target: HTTP/exchange.lab.test or HTTP@exchange.lab.test")
    ap.add_argument("--mech", choices=["spnego", "krb5"], default="spnego",
                    help="token type: SPNEGO (what browsers send in Negotiate; default) or a raw krb5 AP-REQ token")
    ap.add_argument("--name-type", choices=["auto", "principal", "enterprise"], default="auto",
                    help="auto: NT-ENTERPRISE when USER has an @ followed by something other than the realm")
    ap.add_argument("--impersonate-mech", choices=["same", "krb5"], default="same",
                    help="mech of the impersonated credential; krb5 with --mech spnego reproduces the pitfall")
    ap.add_argument("--svc", help="service account principal (default: LAB_SVC_PRINCIPAL)")
    ap.add_argument("--password-file", help="its password (default: LAB_SVC_PASSWORD_FILE)")
    ap.add_argument("--kinit", action="store_true",
                    help="get the service account's TGT with kinit into the private ccache instead of acquire_cred_with_password")
    ap.add_argument("--krb5-conf", help="MIT client configuration (default: LAB_KRB5_CONF)")
    ap.add_argument("--trace", help="write MIT's KRB5_TRACE there")
    ap.add_argument("--url", help="send GET URL with the token and print status and body")
    ap.add_argument("--no-netns", action="store_true", help="do not re-execute inside LAB_NS")
    a = ap.parse_args()

    lab = read_env(a.lab_env)
    ns = lab.get("LAB_NS")
    if ns and not a.no_netns and not in_netns(ns):
        if os.geteuid() != 0:
            die("not inside namespace %s and not root: run it with `ip netns exec %s`" % (ns, ns))
        argv = ["ip", "netns", "exec", ns, sys.executable or "/usr/bin/python3",
                os.path.abspath(__file__)] + sys.argv[1:] + ["--no-netns"]
        os.execvp("ip", argv)

    realm = lab.get("LAB_REALM") or die("%s has no LAB_REALM" % a.lab_env)
    conf = a.krb5_conf or lab.get("LAB_KRB5_CONF") or die("%s has no LAB_KRB5_CONF" % a.lab_env)
    svc = a.svc or lab.get("LAB_SVC_PRINCIPAL") or die("%s has no LAB_SVC_PRINCIPAL" % a.lab_env)
    pwfile = a.password_file or lab.get("LAB_SVC_PASSWORD_FILE") or die("%s has no LAB_SVC_PASSWORD_FILE" % a.lab_env)
    try:
        with open(pwfile) as f:
            password = f.read().rstrip("\r\n")
    except OSError as e:
        die("cannot read the password: %s" % e)

    tmp = tempfile.mkdtemp(prefix="gss-token.")
    try:
        # MIT reads these when it creates its context: set them before importing gssapi
        os.environ["KRB5_CONFIG"] = conf
        os.environ["KRB5CCNAME"] = "FILE:" + os.path.join(tmp, "ccache")
        if a.trace:
            os.environ["KRB5_TRACE"] = a.trace
        else:
            os.environ.pop("KRB5_TRACE", None)
        return run(a, realm, svc, password)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(a, realm, svc, password):
    if a.kinit:
        p = subprocess.run(["kinit", svc], input=password + "\n", text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            print("gss-token: kinit %s failed: %s" % (svc, p.stdout.strip()), file=sys.stderr)
            return 3

    import gssapi
    import gssapi.raw

    krb5 = gssapi.OID.from_int_seq(KRB5_OID)
    spnego = gssapi.OID.from_int_seq(SPNEGO_OID)
    mech = krb5 if a.mech == "krb5" else spnego
    imech = krb5 if a.impersonate_mech == "krb5" else mech

    ntype = a.name_type
    if ntype == "auto":
        ntype = "enterprise" if "@" in a.user and a.user.rsplit("@", 1)[1] != realm else "principal"
    if ntype == "enterprise":
        user = gssapi.Name(a.user, gssapi.OID.from_int_seq(ENTERPRISE_OID))
    else:
        user = gssapi.Name(a.user, gssapi.NameType.kerberos_principal)
    if "/" in a.spn:
        target = gssapi.Name(a.spn, gssapi.NameType.kerberos_principal)
    else:
        target = gssapi.Name(a.spn, gssapi.NameType.hostbased_service)

    try:
        if a.kinit:
            creds = gssapi.Credentials(usage="initiate")
        else:
            # for the impersonation's mech only: impersonate() for SPNEGO fails ("No
            # credentials were supplied") on a credential with only a krb5 element, and
            # [krb5, spnego] makes two AS exchanges (SPNEGO acquires its own krb5 element)
            res = gssapi.raw.acquire_cred_with_password(
                gssapi.Name(svc, gssapi.NameType.kerberos_principal), password.encode(),
                usage="initiate", mechs=[imech])
            creds = gssapi.Credentials(res.creds)
        print("gss-token: service %s, impersonating %s (%s), target %s, mech %s"
              % (creds.name, a.user, ntype, a.spn, a.mech), file=sys.stderr)
        imp = creds.impersonate(user, mechs=[imech], usage="initiate")
        print("gss-token: impersonated credential for %s" % imp.name, file=sys.stderr)
        ctx = gssapi.SecurityContext(name=target, creds=imp, usage="initiate", mech=mech,
                                     flags=gssapi.RequirementFlag.mutual_authentication)
        token = ctx.step()
    except gssapi.exceptions.GSSError as e:
        print("gss-token: GSSAPI error (major %d, minor %d): %s"
              % (e.maj_code, e.min_code, str(e).replace("\n", " ")), file=sys.stderr)
        return 3
    print(base64.b64encode(token).decode())
    sys.stdout.flush()
    if a.url:
        return http_get(a.url, base64.b64encode(token).decode(), ctx)
    return 0


def http_get(url, token, ctx):
    import http.client
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        die("only http:// URLs")
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    try:
        c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
        c.request("GET", path, headers={"Host": u.netloc, "User-Agent": "kcdscope-lab-gss-token",
                                        "Authorization": "Negotiate " + token})
        r = c.getresponse()
        body = r.read()
        www = r.getheader("WWW-Authenticate") or ""
        c.close()
    except OSError as e:
        print("gss-token: HTTP error: %s" % e, file=sys.stderr)
        return 4
    mutual = "none"
    if www.startswith("Negotiate ") and len(www) > len("Negotiate "):
        try:
            ctx.step(base64.b64decode(www[len("Negotiate "):]))
            mutual = "ok" if ctx.complete else "incomplete"
        except Exception as e:  # a GSSError or bad base64: report, do not fail the exchange
            mutual = "failed: %s" % str(e).replace("\n", " ")
    sys.stdout.write("HTTP_STATUS=%d\nMUTUAL_AUTH=%s\n\n" % (r.status, mutual))
    sys.stdout.write(body.decode("utf-8", "replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
