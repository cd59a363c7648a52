"""One table of error codes for every process boundary (engine worker, server worker)."""

from __future__ import annotations

from partcrafter_blender.inference import Cancelled, EngineFailed, EngineUnavailable, InputImageError, InvalidParameter
from partcrafter_blender.inference.errors import ERROR_CODES, error_code, error_from_code
from partcrafter_blender.inference.worker import protocol


def test_every_code_round_trips_to_its_class() -> None:
    for cls, code in ERROR_CODES.items():
        back = error_from_code(code, "why")
        assert type(back) is cls and str(back) == "why" and error_code(back) == code
    assert len(set(ERROR_CODES.values())) == len(ERROR_CODES)


def test_subclasses_take_the_nearest_code_and_bugs_have_none() -> None:
    class WeightsMissing(EngineUnavailable):
        pass

    assert error_code(WeightsMissing("x")) == "engine_unavailable"
    assert error_code(ZeroDivisionError()) is None and error_code(InvalidParameter("steps", "bad")) is None
    assert type(error_from_code("no_such_code", "later version")) is EngineFailed


def test_the_engine_worker_protocol_speaks_the_codes() -> None:
    for exc in (Cancelled(), InputImageError("not an image"), EngineUnavailable("no GPU"), EngineFailed("no parts")):
        event = protocol.decode(protocol.encode(protocol.error_message(exc)))
        assert event["code"] == ERROR_CODES[type(exc)]
        again = protocol.error_from(event)
        assert type(again) is type(exc) and str(again) == str(exc)
    assert protocol.error_message(ValueError("engine bug"))["code"] == "engine_failed"
