"""Run by tflite-runtime's own Python (<= 3.11, numpy < 2), never imported by mnist-edge.

Usage: python legacy_script.py REQUEST.json REPLY.json. The request lists jobs
{"model", "inputs" (.npy or null), "outputs" (.npy or null)}; each model is loaded with the
builtin kernels and no delegate (like litert-ref), run on the inputs (or a zero image), and the
reply says per job whether it loaded (and why not) and how long it took, and what ran it:
tflite-runtime's, numpy's and Python's versions. Only numpy and tflite_runtime are imported.
"""

import json
import platform
import sys
import time

import numpy as np
from tflite_runtime import __version__ as version
from tflite_runtime.interpreter import Interpreter, OpResolverType


def run(job):
    interpreter = Interpreter(
        model_path=job["model"],
        num_threads=1,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    if job["inputs"]:
        x = np.load(job["inputs"])
    else:
        x = np.zeros([1] + [int(d) for d in inp["shape"][1:]], inp["dtype"])
    # A model with a fixed batch (the MCU-lean one) takes one image at a time.
    batch = len(x) if int(inp["shape_signature"][0]) < 0 else int(inp["shape_signature"][0])
    interpreter.resize_tensor_input(inp["index"], [batch] + list(x.shape[1:]))
    interpreter.allocate_tensors()
    outputs = []
    for start in range(0, len(x), batch):
        interpreter.set_tensor(inp["index"], x[start : start + batch])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"]))
    if job["outputs"]:
        np.save(job["outputs"], np.concatenate(outputs))


def main(request_path, reply_path):
    with open(request_path) as handle:
        request = json.load(handle)
    results = []
    for job in request:
        started = time.perf_counter()
        try:
            run(job)
            seconds = round(time.perf_counter() - started, 3)
            results.append({"loaded": True, "error": None, "seconds": seconds})
        except Exception as exc:  # the reply carries the reason; the caller decides
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            results.append({"loaded": False, "error": lines[0][:200], "seconds": None})
    reply = {
        "version": version,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "results": results,
    }
    with open(reply_path, "w") as handle:
        json.dump(reply, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
