"""/v1/chat: conversational recommendation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from recsage.serving.deps import ReadKey, get_served
from recsage.serving.middleware import request_id_of
from recsage.serving.schemas import (
    ERROR_RESPONSES,
    ApiError,
    ChatRequest,
    ChatResponse,
    ScoredItem,
)

router = APIRouter()


MAX_CHAT_SESSIONS = 1000


@router.post(
    "/v1/chat",
    response_model=ChatResponse,
    responses=ERROR_RESPONSES,
    tags=["recommend"],
    summary="One conversational turn (state kept per session_id; rules + embeddings)",
)
def chat(body: ChatRequest, request: Request, _: ReadKey) -> ChatResponse:
    from collections import OrderedDict

    from recsage.llm.conversation.catalogue import Catalogue
    from recsage.llm.conversation.session import ConversationSession

    sm = get_served(request)
    pipe = sm.pipeline
    sessions: OrderedDict[tuple[str, str], Any] = request.app.state.__dict__.setdefault(
        "chat_sessions", OrderedDict()
    )
    key = (sm.version, body.session_id)
    with sm.lock.read():
        if pipe.resources.item_text_vectors is None or pipe.resources.text_encoder is None:
            raise ApiError(
                409, "text_disabled", "chat needs a model trained with item text vectors"
            )
        session = sessions.get(key)
        if session is None:
            assert pipe.users is not None
            history = None
            if body.user_id is not None and body.user_id in pipe.users:
                history = pipe.sequences[pipe.users.index_of(body.user_id)]
            session = ConversationSession(Catalogue.from_pipeline(pipe), history=history, n=body.n)
            sessions[key] = session
            while len(sessions) > MAX_CHAT_SESSIONS:
                sessions.popitem(last=False)
        sessions.move_to_end(key)
        session.n = body.n
        turn = session.turn(body.message)
        items = [
            ScoredItem(item_id=r.item, title=r.title, score=float(r.score), rank=r.rank)
            for r in turn.recommendations
        ]
    return ChatResponse(
        request_id=request_id_of(request),
        model_version=sm.version,
        session_id=body.session_id,
        understood=turn.understood,
        items=items,
    )
