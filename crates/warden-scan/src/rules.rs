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
