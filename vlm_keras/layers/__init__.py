"""Layers: attention (softmax(QK^T/sqrt(d))V), Transformer decoder blocks, embeddings, similarity,
coordinate channels, outline maps, question-conditioned graph attention, word glimpses, word
dropout, grounded word logits, role-filler binding, the attribute probes' and grounding losses."""

from vlm_keras.layers.attribute_probe_loss import AttributeProbeLoss
from vlm_keras.layers.coordinate_channels import CoordinateChannels
from vlm_keras.layers.grounded_word_logits import GroundedWordLogits
from vlm_keras.layers.grounding_loss import GroundingLoss
from vlm_keras.layers.grouped_tokens import GroupedTokens
from vlm_keras.layers.multi_head_attention import MultiHeadAttention
from vlm_keras.layers.outline_image import OutlineImage
from vlm_keras.layers.positional_embedding import PositionalEmbedding
from vlm_keras.layers.question_graph_attention import QuestionGraphAttention
from vlm_keras.layers.region_embedding import RegionEmbedding
from vlm_keras.layers.role_filler_binding import RoleFillerBinding
from vlm_keras.layers.scaled_cosine_similarity import ScaledCosineSimilarity
from vlm_keras.layers.scaled_dot_product_attention import ScaledDotProductAttention
from vlm_keras.layers.transformer_decoder_block import TransformerDecoderBlock
from vlm_keras.layers.word_dropout import WordDropout
from vlm_keras.layers.word_glimpses import WordGlimpses

__all__ = [
    "AttributeProbeLoss",
    "CoordinateChannels",
    "GroundedWordLogits",
    "GroundingLoss",
    "GroupedTokens",
    "MultiHeadAttention",
    "OutlineImage",
    "PositionalEmbedding",
    "QuestionGraphAttention",
    "RegionEmbedding",
    "RoleFillerBinding",
    "ScaledCosineSimilarity",
    "ScaledDotProductAttention",
    "TransformerDecoderBlock",
    "WordDropout",
    "WordGlimpses",
]
