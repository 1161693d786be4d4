"""Plan completion for plans written elsewhere (an LLM): the caption pair and the instruction, written
the way the parser writes them.
"""

from __future__ import annotations

from typing import Optional

from agent.language.parser.words import ParseContext, caption_kind, pluralize, strip_article, with_article
from agent.language.plan import EditPlan


def canonical_instruction(plan: EditPlan) -> str:
    """An InstructPix2Pix instruction written from the plan's fields ("turn the cat into a fox")."""
    obj = f"the {pluralize(plan.grounding_phrase) if plan.plural else plan.grounding_phrase}"
    if plan.action == "replace":
        return f"turn {obj} into {with_article(plan.new_value or 'something else', plan.plural)}"
    if plan.action == "attribute":
        return f"make {obj} {plan.new_value or ''}".strip()
    if plan.action == "remove":
        return f"remove {obj}"
    if plan.action == "add":
        return f"add {plan.new_value} {plan.region_hint or ''}".strip()
    return plan.instruction


def plan_captions(plan: EditPlan, context: Optional[ParseContext] = None) -> tuple[str, str]:
    """``(source_caption, target_caption)`` for a plan, as the parser writes them ("a photo of a cat",
    "a photo of a fox"); the picture's kind and a global edit's scene come from the caption."""
    ctx = context or ParseContext()
    kind = caption_kind(ctx.caption)
    scene = ctx.caption.strip().rstrip(".") if ctx.caption else kind
    if plan.action == "global" or not plan.target:
        change = plan.new_value or plan.instruction or "edited"
        if plan.action == "add" and plan.new_value:
            return scene, f"{scene}, with {with_article(plan.new_value)}"
        return scene, f"{scene}, {change}"
    surface = pluralize(plan.grounding_phrase or plan.target) if plan.plural else plan.grounding_phrase or plan.target
    source = f"{kind} of {with_article(surface, plan.plural)}"
    new = strip_article(plan.new_value or "")
    if plan.action == "replace":
        return source, f"{kind} of {with_article(new or 'something else', plan.plural)}"
    if plan.action == "attribute":
        plain = pluralize(plan.target) if plan.plural else plan.target
        return source, f"{kind} of {with_article(f'{new} {plain}'.strip(), plan.plural)}"
    if plan.action == "remove":
        return source, f"{kind} of the background"
    return source, f"{source} with {with_article(new or 'something new')}"


def complete_plan(plan: EditPlan, context: Optional[ParseContext] = None, english_instruction: bool = False
                  ) -> EditPlan:
    """Fill in what a plan from elsewhere (an LLM) left out, the way the parser writes it: the
    caption pair (DiffEdit and CLIP direction need both) and a missing instruction. With
    ``english_instruction`` (the message was in another language) the instruction is rewritten from
    the plan's fields so InstructPix2Pix gets English."""
    update: dict[str, str] = {}
    if not plan.source_caption or not plan.target_caption:
        source, target = plan_captions(plan, context)
        update["source_caption"] = plan.source_caption or source
        update["target_caption"] = plan.target_caption or target
    if (english_instruction or not plan.instruction) and plan.action != "global":
        update["instruction"] = canonical_instruction(plan)
    return plan.model_copy(update=update) if update else plan
