"""A throwaway certificate authority for tests: a CA and the leaf
certificates it issues, made with the openssl command line."""

import ipaddress
import os
import subprocess


def is_ip(name):
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class TestCA:
    def __init__(self, folder, cn="Volley Test CA"):
        self.folder = folder
        self._run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
                  "-days", "2", "-subj", "/CN=" + cn,
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.ca_pem = os.path.join(folder, "ca.pem")

    def _run(self, *argv):
        subprocess.run(argv, cwd=self.folder, check=True, capture_output=True, timeout=30)

    def issue(self, stem, names):
        """(chain, key, leaf) for a certificate valid for names (host
        names, or IP addresses); the chain file holds the leaf and the
        CA's certificate."""
        self._run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", stem + ".key", "-out", stem + ".csr",
                  "-subj", "/CN=" + names[0])
        ext = os.path.join(self.folder, stem + ".cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\n"
                    % ",".join(("IP:" if is_ip(n) else "DNS:") + n for n in names))
        self._run("openssl", "x509", "-req", "-in", stem + ".csr", "-CA", "ca.pem",
                  "-CAkey", "ca.key", "-CAcreateserial", "-out", stem + ".pem", "-days", "2",
                  "-extfile", ext)
        chain = os.path.join(self.folder, stem + ".chain.pem")
        with open(chain, "w") as out:
            for part in (stem + ".pem", "ca.pem"):
                with open(os.path.join(self.folder, part)) as f:
                    out.write(f.read())
        return chain, os.path.join(self.folder, stem + ".key"), \
            os.path.join(self.folder, stem + ".pem")
