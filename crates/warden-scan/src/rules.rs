//! The catalogue of rule ids: a stable name and a one-line description for each, used
//! by SARIF output and documentation. Ids are never reused for a different meaning.

/// Every rule of the driver, the pickle machine and the containers.
pub const RULES: &[(&str, &str, &str)] = &[
    (
        "WS101",
        "PickleImportOutsideAllowlist",
        "A pickle imports a global that is not on the allowlist; importing can run code and the object can be called later.",
    ),
    (
        "WS102",
        "PickleCallOutsideAllowlist",
        "A pickle calls a global that is not on the allowlist (REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX): code execution on load.",
    ),
    (
        "WS103",
        "PickleUnresolvableImport",
        "A pickle imports a global whose name is built at load time, so no static scanner can know what runs.",
    ),
    (
        "WS104",
        "PickleUnusualGlobalName",
        "A global name with dots, non-ASCII or unusual characters: attribute walks and look-alike names that fool scanners.",
    ),
    (
        "WS105",
        "PickleExtensionCode",
        "An EXT1/EXT2/EXT4 opcode imports through copyreg's extension registry, which a static scanner cannot resolve.",
    ),
    (
        "WS106",
        "PickleBuildOnClass",
        "BUILD sets attributes on a class or function itself: rewiring code through setattr.",
    ),
    (
        "WS107",
        "PickleCallOfUnresolvedValue",
        "A pickle calls a value that is not a resolved global (the result of another call, or something unknown).",
    ),
    (
        "WS110",
        "PickleMalformed",
        "The pickle stream is malformed; loaders reject it and lenient ones may behave differently.",
    ),
    (
        "WS111",
        "PickleTrailingData",
        "Bytes after the end of the pickle are not a pickle; loaders ignore them.",
    ),
    (
        "WS112",
        "PickleUnknownProtocol",
        "The pickle declares a protocol newer than 5.",
    ),
    (
        "WS113",
        "PickleOutOfBandBuffer",
        "The pickle expects out-of-band buffers (NEXT_BUFFER).",
    ),
    (
        "WS114",
        "PicklePersistentId",
        "A persistent id outside a PyTorch checkpoint: only a loader with a persistent_load hook resolves it.",
    ),
    (
        "WS190",
        "PickleLimitExceeded",
        "A pickle exceeded a scan limit (opcodes, stack, memo, line length); the rest was not examined.",
    ),
    (
        "WS191",
        "PickleFindingsSuppressed",
        "More findings in one pickle stream than are listed.",
    ),
    (
        "WS201",
        "ZipDuplicateName",
        "A zip member name appears more than once; loaders disagree on which copy they read.",
    ),
    (
        "WS202",
        "ZipHeaderMismatch",
        "A zip local header disagrees with the central directory (name, method, sizes, flags).",
    ),
    (
        "WS203",
        "ZipEncryptedMember",
        "An encrypted zip member cannot be inspected.",
    ),
    (
        "WS204",
        "ZipDataDescriptorMismatch",
        "A zip data descriptor disagrees with the central directory.",
    ),
    (
        "WS205",
        "ZipOverlappingMembers",
        "Zip members overlap: a bomb and confusion technique.",
    ),
    (
        "WS206",
        "ZipUnaccountedBytes",
        "Bytes before, between or after zip members that no member accounts for.",
    ),
    (
        "WS207",
        "ZipUnsupportedMethod",
        "A zip member uses a compression method PyTorch cannot read and Warden cannot inspect.",
    ),
    (
        "WS208",
        "ZipCrcMismatch",
        "A zip member's CRC does not match (PyTorch ignores CRCs; Python's zipfile refuses).",
    ),
    (
        "WS209",
        "CompressionBomb",
        "Compressed data inflates beyond the ratio or size limits.",
    ),
    (
        "WS210",
        "ZipSizeMismatch",
        "A zip member inflates to a different size than the directory declares.",
    ),
    (
        "WS211",
        "ArchiveUnsafePath",
        "An archive member path is absolute or climbs out of the extraction directory.",
    ),
    ("WS212", "ZipMalformed", "The zip structure is malformed."),
    (
        "WS220",
        "UnsupportedContainer",
        "A 7z, RAR or other container where a model is expected.",
    ),
    (
        "WS221",
        "ArchiveTooDeep",
        "Archives nested deeper than the limit.",
    ),
    (
        "WS222",
        "ArchiveTooLarge",
        "An archive inflates beyond the total size limit.",
    ),
    ("WS230", "TarMalformed", "The tar structure is malformed."),
    ("WS231", "TarLinkOrSpecial", "A tar link or special member."),
    (
        "WS240",
        "CompressedStreamCorrupt",
        "A gzip or zlib stream is corrupt.",
    ),
    (
        "WS250",
        "Polyglot",
        "A file that is one format by its first bytes and a zip archive by its end.",
    ),
    (
        "WS301",
        "NumpyObjectArray",
        "A NumPy object array: its data is a pickle and loading needs allow_pickle=True.",
    ),
    (
        "WS302",
        "NumpyHeaderMalformed",
        "A NumPy header is malformed.",
    ),
    (
        "WS303",
        "NumpyDataSize",
        "A NumPy file's data size differs from its header.",
    ),
    (
        "WS310",
        "TorchLegacyFormat",
        "Legacy (pre-1.6) PyTorch serialization.",
    ),
    (
        "WS311",
        "TorchLayout",
        "A PyTorch checkpoint with an unexpected layout.",
    ),
    (
        "WS312",
        "TorchScriptCode",
        "A TorchScript program whose code torch.jit.load compiles and runs.",
    ),
    (
        "WS901",
        "UnrecognisedFormat",
        "Binary content that is not a model format Warden knows.",
    ),
    (
        "WS902",
        "SpecialFile",
        "A device, socket or pipe in a model directory.",
    ),
    (
        "WS903",
        "SymlinkOutOfTree",
        "A symbolic link pointing outside the scanned tree.",
    ),
    (
        "WS904",
        "PythonSource",
        "Python source shipped with a model (runs with trust_remote_code).",
    ),
    // Safe formats (formats/safetensors, gguf, onnx, keras, hdf5).
    (
        "WS401",
        "SafetensorsHeaderLength",
        "The safetensors header length is impossible: beyond the format's 100 MB limit, past the end of the file, or the file is too short.",
    ),
    (
        "WS402",
        "SafetensorsHeaderNotJson",
        "The safetensors header is not UTF-8 JSON object text.",
    ),
    (
        "WS403",
        "SafetensorsDuplicateKey",
        "A key occurs twice in the safetensors header; loaders disagree on which one wins.",
    ),
    (
        "WS404",
        "SafetensorsMetadataNotStrings",
        "__metadata__ must map strings to strings; anything else is smuggled structure.",
    ),
    (
        "WS405",
        "SafetensorsBadTensorEntry",
        "A tensor entry lacks dtype, shape or data_offsets, has an unknown dtype or unknown fields.",
    ),
    (
        "WS406",
        "SafetensorsSizeMismatch",
        "dtype x shape does not equal the tensor's byte span (or overflows).",
    ),
    (
        "WS407",
        "SafetensorsOffsetsOutOfRange",
        "A tensor's data_offsets fall outside the data region.",
    ),
    ("WS408", "SafetensorsOverlap", "Two tensors share bytes."),
    (
        "WS409",
        "SafetensorsGap",
        "Bytes between tensors belong to no tensor: room for a hidden payload.",
    ),
    (
        "WS410",
        "SafetensorsTrailingBytes",
        "Bytes after the last tensor belong to no tensor (polyglot files hide pickles there).",
    ),
    (
        "WS501",
        "GgufTruncated",
        "A GGUF structure runs past the end of the file.",
    ),
    (
        "WS502",
        "GgufVersion",
        "GGUF version 1 (obsolete) or an unknown version.",
    ),
    (
        "WS503",
        "GgufImpossibleCount",
        "A GGUF tensor, metadata or array count that the file cannot hold (allocation bomb).",
    ),
    (
        "WS504",
        "GgufBadString",
        "A GGUF key or name that is over-long or not UTF-8.",
    ),
    (
        "WS505",
        "GgufBadValueType",
        "An unknown GGUF metadata value type, or arrays nested too deep.",
    ),
    (
        "WS506",
        "GgufDuplicate",
        "A GGUF metadata key or tensor name occurs twice.",
    ),
    (
        "WS507",
        "GgufBadAlignment",
        "general.alignment is not a non-zero power of two stored as uint32.",
    ),
    (
        "WS508",
        "GgufBadTensorInfo",
        "A GGUF tensor with too many dimensions, an unknown type, a partial block or an overflowing size.",
    ),
    (
        "WS509",
        "GgufBadTensorLayout",
        "A GGUF tensor offset that is misaligned, out of range or overlaps another tensor.",
    ),
    (
        "WS510",
        "GgufUnownedBytes",
        "Bytes in the GGUF data section that belong to no tensor.",
    ),
    (
        "WS520",
        "ChatTemplateNotText",
        "A chat template that is not a UTF-8 string.",
    ),
    (
        "WS521",
        "ChatTemplateDunderAccess",
        "A chat template reaches an interpreter-internal name (__class__, __globals__...): a sandbox escape.",
    ),
    (
        "WS522",
        "ChatTemplateBuiltName",
        "A chat template builds an internal name from strings (concatenation, escapes, join, reverse, format).",
    ),
    (
        "WS523",
        "ChatTemplateDynamicAttribute",
        "A chat template looks up attributes by computed names or pulls characters out of object text.",
    ),
    (
        "WS524",
        "ChatTemplateGadgetGlobal",
        "A chat template uses a global (cycler, joiner, lipsum, self, config, request) known to lead to module globals.",
    ),
    (
        "WS525",
        "ChatTemplateDangerousName",
        "A chat template names os, popen, mro, eval and similar process or interpreter internals.",
    ),
    (
        "WS526",
        "ChatTemplateLoadsTemplates",
        "A chat template imports, includes or extends another template.",
    ),
    (
        "WS527",
        "ChatTemplateUnparseable",
        "A chat template that cannot be tokenized; the rest of it was not checked.",
    ),
    (
        "WS601",
        "OnnxExternalDataEscape",
        "An ONNX tensor reads external data from an absolute path, a URL, a drive letter or a path with '..': files outside the model directory.",
    ),
    (
        "WS602",
        "OnnxCustomDomain",
        "An ONNX operator domain outside the standard set and ONNX Runtime's own (needs a custom operator library).",
    ),
    (
        "WS603",
        "OnnxMalformed",
        "Malformed ONNX protobuf (truncated, lengths beyond their message, invalid wire types, no graph).",
    ),
    (
        "WS604",
        "OnnxExternalData",
        "An ONNX tensor keeps its data in a file next to the model (scan that file too).",
    ),
    (
        "WS605",
        "OnnxNestingDepth",
        "ONNX messages nested deeper than the scanner's bound.",
    ),
    (
        "WS606",
        "OnnxExternalDataIncomplete",
        "An ONNX tensor marked external without a location, or with external_data but not marked external.",
    ),
    (
        "WS701",
        "KerasLambdaLayer",
        "A Keras Lambda layer: arbitrary Python runs when the model is loaded or called.",
    ),
    (
        "WS702",
        "KerasBytecode",
        "A Python function serialized as marshalled bytecode in a Keras config.",
    ),
    (
        "WS703",
        "KerasModuleOutsideKeras",
        "A Keras config imports an object from a module that is not Keras.",
    ),
    (
        "WS704",
        "KerasFunctionReference",
        "A Keras config names a plain function that is not an activation, loss or metric (get_file-style safe-mode bypasses).",
    ),
    (
        "WS705",
        "KerasTfOpLambda",
        "A TFOpLambda layer calls a TensorFlow function named in the config.",
    ),
    (
        "WS706",
        "KerasCustomObject",
        "A custom registered Keras object: custom code must be imported to load the model.",
    ),
    (
        "WS707",
        "KerasUnknownClass",
        "A class name in a legacy Keras config that is not a known built-in.",
    ),
    (
        "WS708",
        "KerasConfigMalformed",
        "A Keras config that is not valid JSON or repeats a key.",
    ),
    (
        "WS710",
        "Hdf5Malformed",
        "Malformed HDF5 structure (addresses outside the file, bad signatures, duplicate config attributes).",
    ),
    (
        "WS711",
        "Hdf5TrailingBytes",
        "Bytes after the end-of-file address an HDF5 superblock declares.",
    ),
];

/// Name and description of a rule id; ids owned by the format modules get a generic
/// description naming their range until they are listed here.
pub fn describe(id: &str) -> (&'static str, &'static str) {
    if let Some((_, name, text)) = RULES.iter().find(|(i, _, _)| *i == id) {
        return (name, text);
    }
    match id.get(..3) {
        Some("WS4") => ("SafetensorsStructure", "A safetensors structural check."),
        Some("WS5") => ("GgufStructure", "A GGUF structural or chat-template check."),
        Some("WS6") => ("OnnxStructure", "An ONNX structural check."),
        Some("WS7") => ("KerasStructure", "A Keras or HDF5 check."),
        _ => ("WardenRule", "A Warden scanner rule."),
    }
}
