"""A procedural image-text world in which every image's content is known exactly.

Scenes of 1-4 coloured shapes (:mod:`.scene`) are rendered with anti-aliasing
(:mod:`.render`), described by captions, GenEval-like prompts with machine-readable specs
and questions with answers (:mod:`.text`), read back from pixels by a classical parser
(:mod:`.parse`) and scored exactly (:mod:`.score`). :mod:`.make` turns all of it into
datasets, in memory or on disk; :mod:`.degrade` imitates a VQ decoder's artefacts.

Typical use by a trainer::

    rng = np.random.default_rng(0)
    scene = sample_scene(rng, 160, 96)
    image = render(scene)                      # PIL RGB
    caption = captions(scene, rng)[0]
    qa = questions(scene, rng)                 # [(question, answer, qtype), ...]
    ok = score(sample_spec(rng, "position"), generated_image)
"""

from liquidgen.world.make import Example, WorldDataset, make_example, stream, write_dataset
from liquidgen.world.parse import WORLD_VOCABULARY, ParseVocabulary, parse
from liquidgen.world.render import render
from liquidgen.world.scene import (
    BACKGROUNDS,
    COLORS,
    HELDOUT_PAIRS,
    HELDOUT_RELATIONS,
    RELATIONS,
    SHAPES,
    SIZES,
    ObjectRequest,
    RelationRequest,
    Scene,
    WorldObject,
    sample_scene,
    scenes_match,
)
from liquidgen.world.score import (
    Report,
    aggregate,
    evaluate_scene,
    score,
    score_answer,
    score_scene,
)
from liquidgen.world.text import (
    TAGS,
    PromptSpec,
    Question,
    Requirement,
    captions,
    evaluation_prompts,
    questions,
    sample_spec,
    scene_for_spec,
    scene_prompts,
)

__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "HELDOUT_PAIRS",
    "HELDOUT_RELATIONS",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "TAGS",
    "WORLD_VOCABULARY",
    "Example",
    "ObjectRequest",
    "ParseVocabulary",
    "PromptSpec",
    "Question",
    "RelationRequest",
    "Report",
    "Requirement",
    "Scene",
    "WorldDataset",
    "WorldObject",
    "aggregate",
    "captions",
    "evaluate_scene",
    "evaluation_prompts",
    "make_example",
    "parse",
    "questions",
    "render",
    "sample_scene",
    "sample_spec",
    "scene_for_spec",
    "scene_prompts",
    "scenes_match",
    "score",
    "score_answer",
    "score_scene",
    "stream",
    "write_dataset",
]
