"""Bit packing of spikes (Triton) and its launchers: [rows, cols] <-> uint8 [rows, ceil(cols / 8)], bit j of byte b
= element 8 b + j (csrc's layout).

The pack kernel also reports, per program, whether it met a value other than 0 and 1 (NaN included); the
launcher reduces those flags on the device (no host synchronisation) and the caller decides whether to look.

Compiled-code rules (as kernels/neuron.py): sizes are never used as compile-time constants (an argument equal
to 1 arrives as a constant, so products of sizes are formed in int64 from tl.cast), offsets are int64 from the
program id on, and no program reads back what it stored.
"""
import torch
import triton
import triton.language as tl

from ._spec import KernelSpec

PACK_BLOCK = 256     # bytes per program
UNPACK_BLOCK = 1024  # elements per program


@triton.jit
def pack_bits_kernel(p_x, p_bits, p_bad, rows, cols, nb, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    o_b = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    m_b = o_b < tl.cast(rows, tl.int64) * nb
    o_r = o_b // nb
    o_c0 = (o_b % nb) * 8
    b_byte = tl.zeros([BLOCK], dtype=tl.int32)
    b_bad = tl.zeros([BLOCK], dtype=tl.int32)
    for j in tl.static_range(8):
        o_c = o_c0 + j
        m = m_b & (o_c < cols)
        b_x = tl.load(p_x + o_r * cols + o_c, mask=m, other=0.0).to(tl.float32)
        b_nz = (b_x != 0.0).to(tl.int32)
        b_byte = b_byte | (b_nz << j)
        b_bad = b_bad | (b_nz & (b_x != 1.0).to(tl.int32))
    tl.store(p_bits + o_b, b_byte.to(tl.uint8), mask=m_b)
    tl.store(p_bad + pid, tl.max(b_bad, axis=0))


@triton.jit
def unpack_bits_kernel(p_bits, p_out, rows, cols, nb, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    o_e = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    m_e = o_e < tl.cast(rows, tl.int64) * cols
    o_r = o_e // cols
    o_c = o_e % cols
    b_byte = tl.load(p_bits + o_r * nb + o_c // 8, mask=m_e, other=0).to(tl.int32)
    b_bit = (b_byte >> (o_c % 8).to(tl.int32)) & 1
    tl.store(p_out + o_e, b_bit.to(p_out.dtype.element_ty), mask=m_e)


def _launch(kernel, launch):
    return kernel if launch is None else launch(kernel)


def pack_bits(x2: torch.Tensor, launch=None):
    """x2 [rows, cols] (any float dtype; contiguous) -> (uint8 [rows, ceil(cols / 8)], int32 [1]: 1 if some value
    is neither 0 nor 1, else 0). Nothing is read back to the host."""
    rows, cols = x2.shape
    nb = (cols + 7) // 8
    bits = torch.empty((rows, nb), dtype=torch.uint8, device=x2.device)
    nprog = max(1, triton.cdiv(rows * nb, PACK_BLOCK))
    bad = torch.zeros((nprog,), dtype=torch.int32, device=x2.device)
    if rows * nb:
        _launch(pack_bits_kernel, launch)[(nprog,)](x2, bits, bad, rows, cols, nb, BLOCK=PACK_BLOCK)
    return bits, bad.amax().reshape(1)


def unpack_bits(bits: torch.Tensor, cols: int, dtype: torch.dtype = torch.float32, launch=None) -> torch.Tensor:
    """uint8 [rows, ceil(cols / 8)] (contiguous) -> [rows, cols] of 0/1 in ``dtype``."""
    rows = bits.shape[0]
    out = torch.empty((rows, cols), dtype=dtype, device=bits.device)
    if rows * cols:
        grid = (triton.cdiv(rows * cols, UNPACK_BLOCK),)
        _launch(unpack_bits_kernel, launch)[grid](bits, out, rows, cols, bits.shape[1], BLOCK=UNPACK_BLOCK)
    return out


# every specialisation the launchers above can produce (kernels/_spec.py; compiled for sm_80/sm_90 in CI)
COMPILE_SPECS = [
    KernelSpec(pack_bits_kernel, data=("p_x",), pointers={"p_bits": "*u8", "p_bad": "*i32"},
               ints=("rows", "cols", "nb"), constexprs={"BLOCK": (PACK_BLOCK,)}),
    KernelSpec(unpack_bits_kernel, data=("p_out",), pointers={"p_bits": "*u8"}, ints=("rows", "cols", "nb"),
               constexprs={"BLOCK": (UNPACK_BLOCK,)}),
]
