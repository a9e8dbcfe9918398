"""Run by tflite-runtime's own Python (<= 3.11, numpy < 2), never imported by mnist-edge.

Usage: python legacy_script.py REQUEST.json REPLY.json. The request lists jobs
{"model", "inputs" (.npy or null), "outputs" (.npy or null)}; each model is loaded with the
builtin kernels and no delegate (like litert-ref), run on the inputs (or a zero image), and the
reply says per job whether it loaded, and why not. Only numpy and tflite_runtime are imported.
"""

import json
import sys

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
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    if job["outputs"]:
        np.save(job["outputs"], interpreter.get_tensor(out["index"]))


def main(request_path, reply_path):
    with open(request_path) as handle:
        request = json.load(handle)
    results = []
    for job in request:
        try:
            run(job)
            results.append({"loaded": True, "error": None})
        except Exception as exc:  # the reply carries the reason; the caller decides
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            results.append({"loaded": False, "error": lines[0][:200]})
    with open(reply_path, "w") as handle:
        json.dump({"version": version, "results": results}, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
