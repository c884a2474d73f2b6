"""What Decision Transformer Interpretability (Joseph Bloom and Paul Colognese, LessWrong, 2023) reports about its
first model (1 layer, 2 heads, d_model 128, context 1, the raw 7x7x3 encoding), quoted exactly, so that reports
and comparisons name the paper by title and set its words beside the numbers.

``QUOTES`` holds the sentences (verbatim, the paper's own punctuation) a report cites; the tables hold its figures.
"""
from __future__ import annotations

TITLE = "Decision Transformer Interpretability"
CITATION = "Decision Transformer Interpretability (Joseph Bloom and Paul Colognese, LessWrong, 2023)"

QUOTES = {
    "encoding": "The specific algorithm implemented is strongly affected by the lack of a one-hot-encoding scheme "
                "(initially left out for simplicity of analysis) of the state/observations, which introduces "
                "inductive biases that hamper the model.",
    "ordinality": "This introduces a significant inductive bias induced by spurious index ordinality. For example, "
                  "in the object channel, the goal is 8, and the obstacle (ball) is 6. So an obstacle looks like ¾ s "
                  "of the goal, which is really dumb.",
    "walls_vs_obstacles": "This is cool because it suggests that the inductive bias associated with my idiotically "
                          "not one-hot-encoding the vision is directly why the model avoids walls much more strongly "
                          "than it avoids obstacles. It also explains why early versions of the model avoided the "
                          "goal square.",
    "goal_avoiding": "This inductive bias led to a weird behaviour where agents would successfully avoid the "
                     "obstacles but also try to avoid the goal square. This was fixed when I started over-sampling "
                     "the final step of trajectories, a hack I think wouldn’t be necessary for the one-hot encoded "
                     "version of the model",
    "one_hot_replication": "I've seen replicated these results with a less nasty encoding and the results are mostly "
                           "similar if a little easier to interpret.",
    "calibration": "Critical points at RTG = -1, RTG =0 and RTG ~ 1 are unbiased.",
    "table1": "Table 1: RTG Modulated Behaviours.",
    "head0": "Ablation of Head 0 makes the DT reach the Goal at RTG = -1 from the top",
    "head1": "Ablation of Head 1 makes the DT hit obstacles at RTG = 0.9",
    "mlp": "Ablation of MLP makes the DT approach the Goal at RTG = -1 from the left",
    "table3": "The results suggest embedding functions as a strong wall avoider and a weak goal square seeker.",
    "table3_discussion": "linear combinations of channel/colour encodings used to make the state encoding promote "
                         "wall avoidance, goal entrance but be ambivalent to obstacles/balls.",
    "rtg": "the dot product of the RTG embedding with the forward/right direction is ~1.13",
    "rtg_right_left": "The dot product of the right/left direction with the RTG embedding is ~ -0.16.",
    "qk": "The QK circuit attends to the state (not RTG) when there is anything in front of the agent.",
    "ov": "The OV circuit inhibits forward motion when high object channel values are in front of the agent "
          "(goals/obstacles).",
    "rtg_attention": "Not attending to RTG also inhibits forward motion since RTG projects into forward/right from "
                     "the residual stream.",
}

# Table 1: does the model avoid the thing at target RTG -1, 0, 0.9 ("yes*": could reach -1 by walls, does not)
TABLE1_RTGS = (-1.0, 0.0, 0.9)
TABLE1 = {"wall": ("yes*", "yes", "yes"), "obstacle": ("no", "yes", "yes"), "goal": ("yes", "yes", "no")}
# Table 3: the state embedding's direct push on forward/right with each entity in front (raw codes x weights)
TABLE3 = {"empty": 0.27, "wall": -3.17, "obstacle": 0.136, "goal": 1.42}
TABLE3_WEIGHTS = {"object": 0.27, "colour": -0.742}  # the front cell's weight on forward/right per channel
RTG_EMBEDDING = {"forward_right": 1.13, "right_left": -0.16}  # per pair of actions (a - b)
# The ablation findings (Figure 7): (quote key, component, target RTG, outcome, side the goal is entered from)
ABLATIONS = (("head0", "blocks.0.attn.head0", -1.0, "success", "top"),
             ("head1", "blocks.0.attn.head1", 0.9, "obstacle", None),
             ("mlp", "blocks.0.mlp", -1.0, "success", "left"))


def quote(key: str) -> str:
    """The paper's sentence ``key`` in quotation marks."""
    return f"“{QUOTES[key]}”"
