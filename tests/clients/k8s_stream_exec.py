"""The Python Kubernetes client's `stream` exec through the gateway.

Run by crates/gateway-bin/tests/serve_k8s.rs with the kubeconfig that
`portcullis kubeconfig` printed (argv[1]) and a secret the remote command
prints (argv[2]). Prints one JSON object with what the client saw:

- preloaded: `stream(...)` as most code calls it (output read whole);
- stdout, stderr, returncode: the same call with `_preload_content=False`,
  stdin written through the WebSocket, channels read one by one.
"""

import json
import sys

from kubernetes import client, config
from kubernetes.stream import stream


def main():
    kubeconfig, secret = sys.argv[1], sys.argv[2]
    config.load_kube_config(config_file=kubeconfig)
    api = client.CoreV1Api()

    preloaded = stream(
        api.connect_get_namespaced_pod_exec,
        "web-0",
        "default",
        command=["sh", "-c", f"echo url=postgres://app:{secret}@db:5432/app"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )

    resp = stream(
        api.connect_get_namespaced_pod_exec,
        "web-0",
        "default",
        command=["sh", "-c", "head -c 6; echo to-stderr >&2; exit 4"],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.write_stdin("hello\n")
    out, err = "", ""
    while resp.is_open():
        resp.update(timeout=5)
        if resp.peek_stdout():
            out += resp.read_stdout()
        if resp.peek_stderr():
            err += resp.read_stderr()
    resp.close()
    print(
        json.dumps(
            {
                "preloaded": preloaded,
                "stdout": out,
                "stderr": err,
                "returncode": resp.returncode,
            }
        )
    )


if __name__ == "__main__":
    main()
