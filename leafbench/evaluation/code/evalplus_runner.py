"""The program that runs `evalplus.evaluate` inside the sandbox (sent as ``main.py``).

Never imported by leafbench: `evalplus_reference` sends this file's text to
`sandbox.run_python`, with the job on standard input as ``base64(zlib(json))``: the data file
(gzip, base64), the samples ({task_id, solution}) and the worker count. evalplus executes the
samples with its own harness (a process per check, its reliability guard) — inside our
sandbox, like any generated code.

What evalplus needs, it gets here: HUMANEVAL_OVERRIDE_PATH is set before evalplus is imported
(it reads the variable at import time), its cache (ground truth) goes to the sandbox's working
directory, its output goes to a log file there (standard output is kept for the one report
line), and the process leaves with ``os._exit`` once the result is sent: evaluate starts a
non-daemon watchdog thread that sleeps 20 s.
"""

import base64
import json
import os
import sys
import traceback
import zlib


def main():
    job = json.loads(zlib.decompress(base64.b64decode(sys.stdin.buffer.read())))
    channel = os.dup(1)
    log = os.open("evalplus.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    prefix = job["nonce"] + " "

    def report(**fields):
        os.write(channel, (prefix + json.dumps(fields) + "\n").encode())

    work = os.getcwd()
    data = os.path.join(work, "HumanEvalPlus.jsonl.gz")
    samples = os.path.join(work, "samples.jsonl")
    with open(data, "wb") as fh:
        fh.write(base64.b64decode(job["data"]))
    with open(samples, "w", encoding="utf-8") as fh:
        for sample in job["samples"]:
            fh.write(json.dumps(sample) + "\n")
    os.environ.update({
        "HUMANEVAL_OVERRIDE_PATH": data,
        "XDG_CACHE_HOME": work,
        "TQDM_DISABLE": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    })
    try:
        from evalplus.evaluate import evaluate

        evaluate("humaneval", samples=samples, parallel=job["workers"], i_just_wanna_run=True)
        with open(samples.replace(".jsonl", "_eval_results.json"), encoding="utf-8") as fh:
            results = json.load(fh)["eval"]
        report(statuses={
            task_id: [[r["base_status"], r["plus_status"]] for r in rows]
            for task_id, rows in results.items()
        })
    except BaseException:
        sys.stderr.flush()
        with open("evalplus.log", encoding="utf-8", errors="replace") as fh:
            tail = fh.read()[-2000:]
        report(error=traceback.format_exc()[-2000:] + "\n--- log ---\n" + tail)
    os._exit(0)


if __name__ == "__main__":
    main()
