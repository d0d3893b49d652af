"""Small quantised Transformers (QANNs) in the layout SpikeZIP-TF expects, for tests/test_ann2snn_spikezip.py."""
import torch
import torch.nn as nn


class Quan(nn.Module):
    """A SpikeZIP quantiser: round(x / s) clamped to [neg_min, pos_max], times s."""

    def __init__(self, level=8, sym=True, s=0.1):
        super().__init__()
        self.s = nn.Parameter(torch.tensor(float(s)))
        self.sym, self.level = sym, level
        self.register_buffer("pos_max", torch.tensor(float(level // 2 - 1 if sym else level - 1)))
        self.register_buffer("neg_min", torch.tensor(float(-(level // 2) if sym else 0)))

    def forward(self, x):
        return torch.clamp(torch.round(x / self.s), self.neg_min, self.pos_max) * self.s


class QViTAttention(nn.Module):
    def __init__(self, dim, heads, level):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.quan_q, self.quan_k, self.quan_v = Quan(level, s=0.2), Quan(level, s=0.2), Quan(level, s=0.2)
        self.attn_quan, self.after_attn_quan = Quan(level, sym=False, s=0.05), Quan(level, s=0.1)
        self.quan_proj = Quan(level, s=0.1)
        self.attn_drop, self.proj_drop = nn.Dropout(0.0), nn.Dropout(0.0)

    def forward(self, x):
        B, L, C = x.shape
        q, k, v = self.qkv(x).reshape(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = self.quan_q(q), self.quan_k(k), self.quan_v(v)
        a = self.attn_quan((q * self.scale @ k.transpose(-2, -1)).softmax(-1))
        x = self.after_attn_quan(a @ v).transpose(1, 2).reshape(B, L, C)
        return self.quan_proj(self.proj(x))


class QBlock(nn.Module):
    def __init__(self, dim, heads, level):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), QViTAttention(dim, heads, level)
        self.q1 = Quan(level, s=0.2)
        self.fc1, self.act, self.q2, self.fc2 = nn.Linear(dim, 2 * dim), nn.ReLU(), Quan(level, False, 0.1), \
            nn.Linear(2 * dim, dim)
        self.q3 = Quan(level, s=0.2)

    def forward(self, x):
        x = x + self.attn(self.q1(self.norm1(x)))
        return x + self.q3(self.fc2(self.q2(self.act(self.fc1(x)))))


class PatchEmbed(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, 2, stride=2)


class QViT(nn.Module):
    def __init__(self, dim=8, heads=2, level=8):
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(0.1 * torch.randn(1, 5, dim))
        self.blocks = nn.Sequential(QBlock(dim, heads, level))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 3)

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


class QRobertaSelfAttention(nn.Module):
    def __init__(self, dim, heads, level):
        super().__init__()
        self.num_attention_heads, self.attention_head_size = heads, dim // heads
        self.all_head_size = dim
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.query_quan, self.key_quan, self.value_quan = Quan(level, s=0.2), Quan(level, s=0.2), Quan(level, s=0.2)
        self.attn_quan, self.after_attn_quan = Quan(level, sym=False, s=0.05), Quan(level, s=0.1)
        self.dropout = nn.Dropout(0.0)


class QRoberta(nn.Module):
    def __init__(self, dim=8, heads=2, level=8):
        super().__init__()
        self.emb = nn.Embedding(11, dim)
        self.attention = QRobertaSelfAttention(dim, heads, level)
        self.out = nn.Linear(dim, 4)

    def forward(self, ids, attention_mask=None):
        h = self.emb(ids)
        ctx = self.attention(h, attention_mask=attention_mask)[0]
        return self.out(ctx + h)
