#!/usr/bin/env python3
"""Generate the safe-format part of the scanner corpus (safetensors, GGUF, ONNX, Keras, HDF5).

Run from anywhere with a scratch venv that has the real writers (never inside the repo):

    python3 -m venv /tmp/fmtvenv
    /tmp/fmtvenv/bin/pip install numpy safetensors gguf onnx h5py
    /tmp/fmtvenv/bin/python crates/warden-scan/tests/corpus/make_formats_corpus.py

The generated files are small and committed; CI never runs this script.

Layout: benign/<fmt>/... must scan clean (no finding above info);
malicious/<fmt>/wsNNN-*.ext must produce at least finding WSNNN (the rule id in the
file name, checked by tests/formats.rs). Benign files come from the real writers
(safetensors.numpy, gguf.GGUFWriter, onnx.helper, h5py); malicious ones are written
byte by byte where a writer would refuse to produce them. Every file's recipe is the
function that makes it, below, with a comment naming the technique.
"""

import io
import json
import os
import struct
import sys
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
made = []


def out(kind, fmt, name, data):
    d = os.path.join(ROOT, kind, fmt)
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(data)
    made.append(os.path.relpath(p, ROOT))


# A harmless stand-in for a pickle payload hidden in unused bytes (never executed).
PICKLE_PAYLOAD = b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x8c\x06system\x93\x8c\x02id\x85R."

# --------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------


def st_raw(header, data=b"", length=None):
    """Write a safetensors file by hand: u64 header length, JSON header, data."""
    h = header if isinstance(header, bytes) else header.encode()
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data


def safetensors_files():
    from safetensors.numpy import save

    # Real writer: two tensors and string metadata.
    out("benign", "safetensors", "small.safetensors", save(
        {"weight": np.arange(12, dtype=np.float32).reshape(3, 4),
         "bias": np.ones(4, dtype=np.float16)},
        metadata={"format": "pt", "note": "generated"}))
    # Real writer: no tensors at all.
    out("benign", "safetensors", "empty.safetensors", save({}))
    # Real writer: every common dtype, including a scalar and a zero-length tensor.
    out("benign", "safetensors", "dtypes.safetensors", save({
        "u8": np.zeros(3, np.uint8), "i64": np.array(7, np.int64), "f64": np.zeros((2, 2)),
        "b": np.array([True, False]), "empty": np.zeros((0, 5), np.float32)}))

    t = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    # Header length claims more bytes than the file holds.
    out("malicious", "safetensors", "ws401-header-length-past-eof.safetensors", st_raw(t, b"\0" * 8, length=1 << 20))
    # Header is not JSON.
    out("malicious", "safetensors", "ws402-header-not-json.safetensors", st_raw("{not json at all}", b""))
    # Same tensor name twice with different offsets: which one a loader picks differs.
    out("malicious", "safetensors", "ws403-duplicate-tensor.safetensors", st_raw(
        '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
        '"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}', b"\0" * 8))
    # __metadata__ carrying a nested object (only string values are allowed).
    out("malicious", "safetensors", "ws404-metadata-not-strings.safetensors", st_raw(
        '{"__metadata__":{"cfg":{"exec":"import os"}},' + t[1:], b"\0" * 8))
    # dtype x shape disagrees with the byte span.
    out("malicious", "safetensors", "ws406-shape-mismatch.safetensors", st_raw(
        '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}', b"\0" * 8))
    # Offsets point past the data region.
    out("malicious", "safetensors", "ws407-offsets-out-of-range.safetensors", st_raw(
        '{"a":{"dtype":"F32","shape":[1024],"data_offsets":[0,4096]}}', b"\0" * 8))
    # Two tensors sharing bytes.
    out("malicious", "safetensors", "ws408-overlapping-tensors.safetensors", st_raw(
        '{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},'
        '"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}', b"\0" * 8))
    # A pickle hidden in a gap between tensors.
    gap = PICKLE_PAYLOAD
    out("malicious", "safetensors", "ws409-payload-in-gap.safetensors", st_raw(
        '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
        '"b":{"dtype":"U8","shape":[4],"data_offsets":[%d,%d]}}' % (4 + len(gap), 8 + len(gap)),
        b"\0" * 4 + gap + b"\0" * 4))
    # Polyglot: a valid file with a pickle appended after the last tensor.
    good = save({"w": np.zeros(4, np.float32)})
    out("malicious", "safetensors", "ws410-trailing-pickle.safetensors", good + PICKLE_PAYLOAD)


# --------------------------------------------------------------------------------------
# GGUF
# --------------------------------------------------------------------------------------

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# A long template in the style of current tool-calling models (written for this corpus).
TOOLS_TEMPLATE = """{%- set ns = namespace(system='', last_user=0, found_tools=false) -%}
{%- if messages[0]['role'] == 'system' -%}
  {%- set ns.system = messages[0]['content'] | trim -%}
  {%- set messages = messages[1:] -%}
{%- endif -%}
{%- if tools is defined and tools -%}
  {%- set ns.found_tools = true -%}
{%- endif -%}
{{- bos_token -}}
{{- '<|system|>\\n' ~ ns.system ~ '\\nToday: ' ~ strftime_now('%Y-%m-%d') ~ '\\n' -}}
{%- if ns.found_tools -%}
  {{- 'You may call these tools. Reply with {"name": ..., "arguments": {...}}.\\n' -}}
  {%- for tool in tools -%}
    {{- tool | tojson(indent=2) ~ '\\n' -}}
  {%- endfor -%}
{%- endif -%}
{%- for message in messages -%}
  {%- if message.role not in ['user', 'assistant', 'tool'] -%}
    {{- raise_exception('Unknown role: ' ~ message.role) -}}
  {%- endif -%}
  {%- if (message.role == 'user') != (loop.index0 % 2 == 0) and message.role != 'tool' -%}
    {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}
  {%- endif -%}
  {%- if message.content is string -%}
    {%- set content = message.content -%}
  {%- else -%}
    {%- set content = message.content | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('\\n') -%}
  {%- endif -%}
  {%- if message.tool_calls is defined -%}
    {%- for call in message.tool_calls -%}
      {{- '<tool_call>' ~ {'name': call.function.name, 'arguments': call.function.arguments} | tojson ~ '</tool_call>' -}}
    {%- endfor -%}
  {%- endif -%}
  {{- '<|' ~ message.role ~ '|>\\n' ~ content | trim ~ '<|end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|assistant|>\\n' -}}{%- endif -%}
"""


def gguf_real(path, template, extra=None):
    import gguf
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("warden-corpus")
    w.add_token_list(["<s>", "</s>", "a", "b"])
    w.add_token_scores([0.0, 0.0, -1.0, -2.0])
    if template is not None:
        w.add_chat_template(template)
    for k, v in (extra or {}).items():
        w.add_string(k, v)
    w.add_tensor("tok_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
    w.add_tensor("norm.weight", np.ones(8, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(path, "rb") as f:
        return f.read()


def gguf_template_file(template, key="tokenizer.chat_template"):
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.gguf")
        if key == "tokenizer.chat_template":
            return gguf_real(p, template)
        return gguf_real(p, CHATML, {key: template})


def gs(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_raw(version=3, kvs=(), tensors=(), data=b"", align=32, counts=None):
    """Write GGUF by hand. kvs: (key, type, payload bytes); tensors: (name, dims, type, offset)."""
    n_t, n_kv = counts if counts else (len(tensors), len(kvs))
    b = b"GGUF" + struct.pack("<IQQ", version, n_t, n_kv)
    for k, t, p in kvs:
        b += gs(k) + struct.pack("<I", t) + p
    for name, dims, ty, off in tensors:
        b += gs(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        b += struct.pack("<IQ", ty, off)
    b += b"\0" * ((-len(b)) % align)
    return b + data


def gguf_files():
    out("benign", "gguf", "chatml.gguf", gguf_template_file(CHATML))
    out("benign", "gguf", "tools-template.gguf", gguf_template_file(TOOLS_TEMPLATE))
    out("benign", "gguf", "named-template.gguf", gguf_template_file(TOOLS_TEMPLATE, "tokenizer.chat_template.tool_use"))
    out("benign", "gguf", "no-template.gguf", gguf_template_file(None))

    # The llama-cpp-python CVE-2024-34359 payload shape: walk __subclasses__ to a class with
    # module globals, then __import__('os').popen.
    out("malicious", "gguf", "ws521-subclasses-popen.gguf", gguf_template_file(
        "{% for x in ().__class__.__base__.__subclasses__() %}{% if \"warning\" in x.__name__ %}"
        "{{ x()._module.__builtins__['__import__']('os').popen('id').read() }}{% endif %}{% endfor %}"
        + CHATML))
    # Jinja globals with __globals__ (cycler/joiner/lipsum gadgets).
    out("malicious", "gguf", "ws524-lipsum-globals.gguf", gguf_template_file(
        "{{ lipsum.__globals__['os'].popen('id').read() }}" + CHATML))
    # Dunder names built by concatenation, fed to the attr filter (no dunder token in the text).
    out("malicious", "gguf", "ws522-attr-concat.gguf", gguf_template_file(
        "{% set c = '__cla' ~ 'ss__' %}{{ ''|attr('_'*2 ~ 'class' ~ '_'*2)|attr('\\x5f\\x5fmro\\x5f\\x5f') }}" + CHATML))
    # Characters pulled out of an object's repr to spell blocked names.
    out("malicious", "gguf", "ws523-select-string.gguf", gguf_template_file(
        "{% set u = (()|select|string)[24] %}{{ ()|attr(u ~ u ~ 'class' ~ u ~ u) }}" + CHATML))
    # The payload in a named template only a tool-use code path renders.
    out("malicious", "gguf", "ws525-named-template-mro.gguf", gguf_template_file(
        "{{ ''.__class__.mro()[1] }}", "tokenizer.chat_template.tool_use"))

    f32 = 0
    t_ok = [("w", [4], f32, 0)]
    # GGUF v1 (obsolete; u32 counts and lengths).
    out("malicious", "gguf", "ws502-version-1.gguf", b"GGUF" + struct.pack("<III", 1, 0, 0))
    # Tensor count that cannot fit (allocation bomb for naive readers).
    out("malicious", "gguf", "ws503-huge-tensor-count.gguf", gguf_raw(counts=(1 << 62, 0)))
    # String length far beyond the file.
    out("malicious", "gguf", "ws501-string-past-eof.gguf", gguf_raw(kvs=[("general.name", 8, struct.pack("<Q", 1 << 40) + b"x")]))
    # Same key twice with different values.
    out("malicious", "gguf", "ws506-duplicate-key.gguf", gguf_raw(
        kvs=[("general.architecture", 8, gs("llama")), ("general.architecture", 8, gs("gpt2"))],
        tensors=t_ok, data=b"\0" * 16))
    # general.alignment that is not a power of two.
    out("malicious", "gguf", "ws507-bad-alignment.gguf", gguf_raw(
        kvs=[("general.alignment", 4, struct.pack("<I", 24))], tensors=t_ok, data=b"\0" * 16))
    # Tensor offset not aligned and overlapping another tensor.
    out("malicious", "gguf", "ws509-misaligned-overlap.gguf", gguf_raw(
        tensors=[("a", [8], f32, 0), ("b", [8], f32, 8)], data=b"\0" * 64))
    # Unknown ggml type id.
    out("malicious", "gguf", "ws508-unknown-type.gguf", gguf_raw(tensors=[("a", [8], 99, 0)], data=b"\0" * 32))
    # Pickle appended after the tensor data.
    out("malicious", "gguf", "ws510-trailing-payload.gguf", gguf_raw(tensors=t_ok, data=b"\0" * 16 + b"\0" * 16 + PICKLE_PAYLOAD * 2))


SECTIONS = {"safetensors": safetensors_files, "gguf": gguf_files}

# --------------------------------------------------------------------------------------
# ONNX (real writer: onnx.helper; hostile fields set on real protos)
# --------------------------------------------------------------------------------------


def onnx_model(nodes, inits=(), domains=(("", 17),), name="g"):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    g = helper.make_graph(nodes, name, [x], [y], initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in domains])
    return m


def external(name, location):
    """An initializer whose data lives in another file (data_location = EXTERNAL)."""
    from onnx import TensorProto, helper
    t = helper.make_tensor(name, TensorProto.FLOAT, [4], [0.0] * 4)
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "16")):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def onnx_files():
    import onnx
    from onnx import TensorProto, helper
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).flatten().tolist())
    mlp = onnx_model([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], [w])
    onnx.checker.check_model(mlp)
    out("benign", "onnx", "mlp.onnx", mlp.SerializeToString())
    # ONNX Runtime contrib operator (allowlisted domain) and raw_data initializer.
    raw = helper.make_tensor("b", TensorProto.FLOAT, [4], np.ones(4, np.float32).tobytes(), raw=True)
    ort = onnx_model([helper.make_node("FusedMatMul", ["x", "w"], ["h"], domain="com.microsoft", alpha=1.0),
                      helper.make_node("Add", ["h", "b"], ["y"])], [w, raw],
                     domains=(("", 17), ("com.microsoft", 1)))
    out("benign", "onnx", "ort-contrib.onnx", ort.SerializeToString())
    # A custom operator domain: informational only.
    cust = onnx_model([helper.make_node("MyOp", ["x"], ["y"], domain="org.example.ops")],
                      domains=(("", 17), ("org.example.ops", 1)))
    out("benign", "onnx", "custom-domain-info.onnx", cust.SerializeToString())
    # Control flow: If with then/else subgraphs.
    yb = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    then_g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "then", [], [yb])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "else", [], [yb])
    cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
    iff = onnx_model([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], [cond])
    out("benign", "onnx", "if-subgraphs.onnx", iff.SerializeToString())
    # External data in a file next to the model: informational.
    ok_ext = onnx_model([helper.make_node("Add", ["x", "e"], ["y"])], [external("e", "weights/e.bin")])
    out("benign", "onnx", "external-relative-info.onnx", ok_ext.SerializeToString())

    # External data pointing at an absolute path (reads any file the loader can read).
    m = onnx_model([helper.make_node("Add", ["x", "e"], ["y"])], [external("e", "/etc/passwd")])
    out("malicious", "onnx", "ws601-external-absolute.onnx", m.SerializeToString())
    # External data escaping the model directory with '..' (CVE-2024-27318 / 5187 shape).
    m = onnx_model([helper.make_node("Add", ["x", "e"], ["y"])], [external("e", "weights/../../../../root/.ssh/id_rsa")])
    out("malicious", "onnx", "ws601-external-dotdot.onnx", m.SerializeToString())
    # The same, hidden in the else-branch subgraph of an If node.
    hidden = helper.make_graph([helper.make_node("Add", ["x", "e"], ["y"])], "else", [], [yb], initializer=[external("e", "C:\\Windows\\win.ini")])
    m = onnx_model([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=hidden)], [cond])
    out("malicious", "onnx", "ws601-external-in-subgraph.onnx", m.SerializeToString())
    # EXTERNAL data_location without a location entry.
    t = external("e", "x.bin")
    del t.external_data[0]
    m = onnx_model([helper.make_node("Add", ["x", "e"], ["y"])], [t])
    out("malicious", "onnx", "ws606-external-no-location.onnx", m.SerializeToString())
    # A truncated model (length prefix larger than what is left).
    out("malicious", "onnx", "ws603-truncated.onnx", mlp.SerializeToString()[:-7])
    # Subgraphs nested 25 If-levels deep (75 protobuf levels; parser stack exhaustion).
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "leaf", [], [yb])
    for i in range(25):
        g = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=g, else_branch=g if i < 1 else then_g)], "n%d" % i, [], [yb])
    m = onnx_model([helper.make_node("If", ["c"], ["y"], then_branch=g, else_branch=then_g)], [cond])
    out("malicious", "onnx", "ws605-deep-nesting.onnx", m.SerializeToString())


# --------------------------------------------------------------------------------------
# Keras (.keras zips built with zipfile + json; no TensorFlow) and legacy HDF5 (.h5, h5py)
# --------------------------------------------------------------------------------------

def dense(name, units, act="relu"):
    return {"module": "keras.layers", "class_name": "Dense", "config": {
        "name": name, "trainable": True,
        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None},
        "units": units, "activation": act, "use_bias": True,
        "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": None}, "registered_name": None},
        "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {}, "registered_name": None},
        "kernel_regularizer": None, "bias_regularizer": None, "kernel_constraint": None, "bias_constraint": None},
        "registered_name": None, "build_config": {"input_shape": [None, 8]}}


def keras3_model(layers):
    return {"module": "keras", "class_name": "Sequential", "config": {
        "name": "sequential", "trainable": True,
        "layers": [{"module": "keras.layers", "class_name": "InputLayer", "config": {"batch_shape": [None, 8], "dtype": "float32", "sparse": False, "name": "input_layer"}, "registered_name": None}] + layers,
        "build_input_shape": [None, 8]},
        "registered_name": None, "build_config": {"input_shape": [None, 8]},
        "compile_config": {"optimizer": {"module": "keras.optimizers", "class_name": "Adam", "config": {"name": "adam", "learning_rate": 0.001}, "registered_name": None},
                           "loss": "binary_crossentropy", "metrics": ["accuracy"], "loss_weights": None, "run_eagerly": False}}


def bytecode_b64():
    """What Keras writes for a lambda: base64(marshal.dumps(code)), with newlines. Never run."""
    import base64
    import marshal
    code = compile("lambda x: __import__('os').system('id')", "<lambda>", "eval").co_consts[0]
    return base64.encodebytes(marshal.dumps(code)).decode()


def weights_h5():
    import h5py
    bio = io.BytesIO()
    with h5py.File(bio, "w") as f:
        g = f.create_group("layers/dense/vars")
        g.create_dataset("0", data=np.zeros((8, 4), np.float32))
        g.create_dataset("1", data=np.zeros(4, np.float32))
    return bio.getvalue()


def keras_zip(config, metadata=None):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", json.dumps(metadata or {"keras_version": "3.8.0", "date_saved": "2025-01-01@00:00:00"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", weights_h5())
    return bio.getvalue()


def lambda3():
    return {"module": "keras.layers", "class_name": "Lambda", "config": {
        "name": "lambda", "trainable": True, "dtype": "float32",
        "function": {"class_name": "__lambda__", "config": {"code": bytecode_b64(), "defaults": None, "closure": None}},
        "arguments": {}}, "registered_name": None}


def keras_files():
    out("benign", "keras", "sequential.keras", keras_zip(keras3_model([dense("dense", 4), dense("out", 1, "sigmoid")])))
    fn_loss = keras3_model([dense("dense", 4)])
    fn_loss["compile_config"]["loss"] = {"module": "keras.losses", "class_name": "function", "config": "mean_squared_error", "registered_name": "mean_squared_error"}
    out("benign", "keras", "function-loss.keras", keras_zip(fn_loss))

    # Keras 3 Lambda layer with marshalled bytecode (runs with safe_mode=False or via bypasses).
    out("malicious", "keras", "ws701-lambda-bytecode.keras", keras_zip(keras3_model([dense("d", 4), lambda3()])))
    # Bytecode hidden in metadata.json, outside any layer.
    out("malicious", "keras", "ws702-bytecode-in-metadata.keras", keras_zip(keras3_model([dense("d", 4)]), {"keras_version": "3.8.0", "x": bytecode_b64()}))
    # module pointing outside Keras (import of arbitrary code on load).
    evil = {"module": "os", "class_name": "system", "config": {"command": "id"}, "registered_name": None}
    out("malicious", "keras", "ws703-module-os.keras", keras_zip(keras3_model([dense("d", 4), evil])))
    # CVE-2025-8747 shape: a Keras utility function (get_file) named as an object to build.
    gf = {"module": "keras.utils", "class_name": "function", "config": "get_file", "registered_name": "get_file"}
    bypass = keras3_model([dense("d", 4)])
    bypass["config"]["layers"][1]["config"]["kernel_initializer"] = gf
    out("malicious", "keras", "ws704-get-file.keras", keras_zip(bypass))
    # TFOpLambda calling a TensorFlow function named in the config.
    tfop = {"class_name": "TFOpLambda", "config": {"name": "tf.io.write_file", "function": "io.write_file"}}
    out("malicious", "keras", "ws705-tfoplambda.keras", keras_zip(keras3_model([tfop])))
    # A custom registered object (needs custom code imported at load time).
    cust = {"module": "my_pkg.layers", "class_name": "Fancy", "config": {}, "registered_name": "MyPkg>Fancy"}
    out("malicious", "keras", "ws706-custom-registered.keras", keras_zip(keras3_model([cust])))


def legacy_config(layers):
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 8], "dtype": "float32", "name": "input_1"}}] + layers}}


def legacy_dense(name, units):
    return {"class_name": "Dense", "config": {"name": name, "units": units, "activation": "relu", "use_bias": True,
            "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}}}}


def h5_file(config, vlen=False, libver=None, userblock=0, training=True, weights=True, fixed=False):
    """What Keras 2's HDF5 saver writes: JSON bytes in root attributes plus weight groups.
    h5py 3 stores bytes as variable-length strings (global heap); h5py 2 (older Keras
    files) stored fixed-length strings, reproduced here with numpy.bytes_ (fixed=True)."""
    import h5py
    bio = io.BytesIO()
    kw = {}
    if libver:
        kw["libver"] = libver
    if userblock:
        kw["userblock_size"] = userblock
    with h5py.File(bio, "w", **kw) as f:
        enc = (lambda s: s) if vlen else (lambda s: s.encode("utf8"))
        if fixed:
            enc = lambda s: np.bytes_(s.encode("utf8"))  # noqa: E731
        f.attrs["keras_version"] = enc("2.15.0")
        f.attrs["backend"] = enc("tensorflow")
        if config is not None:
            f.attrs["model_config"] = enc(json.dumps(config))
        if training:
            f.attrs["training_config"] = enc(json.dumps({"loss": "mse", "optimizer_config": {"class_name": "Adam", "config": {"learning_rate": 0.001}}}))
        if weights:
            g = f.create_group("model_weights/dense/dense")
            g.create_dataset("kernel:0", data=np.zeros((8, 4), np.float32))
    return bio.getvalue()


def h5_files():
    cfg = legacy_config([legacy_dense("dense", 4), legacy_dense("dense_1", 1)])
    out("benign", "h5", "keras2-sequential.h5", h5_file(cfg))
    out("benign", "h5", "keras2-vlen-latest.h5", h5_file(cfg, vlen=True, libver="latest"))
    out("benign", "h5", "keras2-userblock.h5", h5_file(cfg, userblock=512))
    out("benign", "h5", "weights-only.h5", h5_file(None, training=False))
    out("benign", "h5", "keras2-fixed-string.h5", h5_file(cfg, fixed=True))
    # A config big enough to need object header continuation blocks (v1 headers).
    big = legacy_config([legacy_dense("dense_%d" % i, 4) for i in range(60)])
    out("benign", "h5", "keras2-large-config.h5", h5_file(big))

    lam = {"class_name": "Lambda", "config": {"name": "lambda", "function": [bytecode_b64(), None, None],
           "function_type": "lambda", "module": "__main__", "output_shape": None, "arguments": {}}}
    # Legacy Lambda with marshalled bytecode (CVE-2024-3660 shape), fixed-length string.
    out("malicious", "h5", "ws701-lambda-bytecode.h5", h5_file(legacy_config([legacy_dense("d", 4), lam])))
    out("malicious", "h5", "ws701-lambda-fixed-string.h5", h5_file(legacy_config([lam]), fixed=True))
    # Same, variable-length string in a v2 object header (libver latest).
    out("malicious", "h5", "ws701-lambda-vlen-latest.h5", h5_file(legacy_config([lam]), vlen=True, libver="latest"))
    # Keras-3-style module key pointing at os, in an .h5.
    evil = {"module": "os", "class_name": "system", "config": {}}
    out("malicious", "h5", "ws703-module-os.h5", h5_file(legacy_config([evil])))
    # A pickle appended after the end-of-file address the superblock declares.
    out("malicious", "h5", "ws711-trailing-payload.h5", h5_file(cfg) + PICKLE_PAYLOAD)
    # Root object header address pointing outside the file.
    b = bytearray(h5_file(cfg))
    assert b[8] == 0  # superblock v0: root object header address at byte 64
    b[64:72] = struct.pack("<Q", 1 << 40)
    out("malicious", "h5", "ws710-root-outside-file.h5", bytes(b))
    # Not corpus: a valid file whose root attributes sit in dense storage (fractal heap),
    # which the reader does not implement; the scan must fail closed (tests/data/).
    import h5py
    bio = io.BytesIO()
    with h5py.File(bio, "w", libver="latest") as f:
        for i in range(20):
            f.attrs["a%02d" % i] = "x" * 100
        f.attrs["model_config"] = json.dumps(cfg)
    d = os.path.join(ROOT, "..", "data")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "h5-dense-attributes.h5"), "wb") as fh:
        fh.write(bio.getvalue())
    made.append("../data/h5-dense-attributes.h5")


SECTIONS.update({"onnx": onnx_files, "keras": keras_files, "h5": h5_files})


if __name__ == "__main__":
    wanted = sys.argv[1:] or list(SECTIONS)
    for name in wanted:
        SECTIONS[name]()
    for m in made:
        print(m)
