"""Shrink an onnxruntime-gpu wheel to one GPU architecture, for a machine it must be copied to.

Provenance of `gpu-h200-cuda.jsonl.gz`: the lent GPU machine could not download, and it received at
most 64 MiB per call, while onnxruntime-gpu 1.31.1's wheel is 256 MB (231 MB of it CUDA kernels for
sm_75/80/86/89/90/120 in `libonnxruntime_providers_cuda.so`). This keeps the file's layout and
zeroes, inside its `.nv_fatbin` section, the payload of every kernel image that is

* for another architecture than ``--arch`` (the driver picks the exact-match image), or
* for contrib operators only: attention, MoE, quantized GEMM (cutlass, flash, xqa, ...), which
  standard ONNX operators never launch.

Zeroed images compress to nothing: the package became a 29 MB tar.xz. The kept sm_90 images are
byte-identical, so the standard operators run the wheel's own kernels. Not needed on a real device:
there, `pip install onnxruntime-gpu`.

    python data/reference/prune_ort_cuda.py onnxruntime_gpu-1.31.1-cp312-...whl --arch 90 -o ort-site.tar.xz

Needs the `zstd` command (kernel images are zstd-compressed; their names decide the contrib test).
"""

from __future__ import annotations

import argparse
import io
import re
import struct
import subprocess
import tarfile
import zipfile

FATBIN_MAGIC = 0xBA55ED50
PROVIDER = "onnxruntime/capi/libonnxruntime_providers_cuda.so"
CONTRIB_ONLY = (b"flash", b"cutlass", b"moe", b"Moe", b"fpA_intB", b"xqa", b"Attention", b"attention",
                b"qordered", b"Qordered", b"MatMulNBits", b"RotaryEmbedding", b"GroupQuery")
SKIPPED_PACKAGES = ("onnxruntime/transformers/", "onnxruntime/quantization/", "onnxruntime/tools/")


def section(elf: bytes, name: str) -> tuple[int, int]:
    """File offset and size of an ELF64 section."""
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    strtab_offset = struct.unpack_from("<Q", elf, shoff + shstrndx * shentsize + 0x18)[0]
    for index in range(shnum):
        header = shoff + index * shentsize
        name_offset = struct.unpack_from("<I", elf, header)[0]
        start = strtab_offset + name_offset
        if elf[start:elf.index(b"\0", start)].decode() == name:
            return struct.unpack_from("<Q", elf, header + 0x18)[0], struct.unpack_from("<Q", elf, header + 0x20)[0]
    raise SystemExit(f"{PROVIDER} has no {name} section: not a CUDA build of onnxruntime")


def images(elf: bytes, offset: int, size: int):
    """(payload offset, payload size, arch) of every kernel image in the fatbin containers."""
    position, end = offset, offset + size
    while position < end:
        magic, _, header_size, body_size = struct.unpack_from("<IHHQ", elf, position)
        if magic != FATBIN_MAGIC:  # alignment padding between containers
            position += 8
            continue
        entry, body_end = position + header_size, position + header_size + body_size
        while entry < body_end:
            _, _, entry_header, payload = struct.unpack_from("<HHIQ", elf, entry)
            yield entry + entry_header, payload, struct.unpack_from("<I", elf, entry + 28)[0]
            entry += entry_header + payload
        position = body_end


def contrib_only(payload: bytes) -> bool:
    image = subprocess.run(["zstd", "-d", "-c", "-q"], input=payload, capture_output=True).stdout
    symbols = b" ".join(set(re.findall(rb"_Z[A-Za-z0-9_]{6,}", image)))  # the image's mangled kernel names
    return any(word in symbols for word in CONTRIB_ONLY)


def prune(elf: bytearray, arch: int) -> tuple[int, int]:
    kept = zeroed = 0
    for start, size, image_arch in list(images(bytes(elf), *section(bytes(elf), ".nv_fatbin"))):
        if image_arch == arch and not contrib_only(bytes(elf[start:start + size])):
            kept += size
        else:
            elf[start:start + size] = bytes(size)
            zeroed += size
    return kept, zeroed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel")
    parser.add_argument("--arch", type=int, default=90, help="compute capability x10 of the target GPU (H100/H200: 90)")
    parser.add_argument("-o", "--output", default="ort-site.tar.xz", help="tar.xz to unpack into a PYTHONPATH folder")
    args = parser.parse_args()
    with zipfile.ZipFile(args.wheel) as wheel, tarfile.open(args.output, "w:xz") as out:
        for member in wheel.infolist():
            if member.is_dir() or member.filename.startswith(SKIPPED_PACKAGES):
                continue
            data = wheel.read(member)
            if member.filename == PROVIDER:
                elf = bytearray(data)
                kept, zeroed = prune(elf, args.arch)
                data = bytes(elf)
                print(f"kernel images kept {kept / 1e6:.1f} MB, zeroed {zeroed / 1e6:.1f} MB")
            info = tarfile.TarInfo(member.filename)
            info.size, info.mode = len(data), 0o755 if member.filename.endswith(".so") or ".so." in member.filename else 0o644
            out.addfile(info, io.BytesIO(data))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
