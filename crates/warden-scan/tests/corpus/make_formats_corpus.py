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

if __name__ == "__main__":
    wanted = sys.argv[1:] or list(SECTIONS)
    for name in wanted:
        SECTIONS[name]()
    for m in made:
        print(m)
