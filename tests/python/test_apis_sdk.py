"""The mock upstream's Responses API and Anthropic Messages API as seen by the official SDKs.

Run by scripts/e2e-python-apis.sh against `canarist mock-upstream` directly (the gateway does not
route these paths yet); its base URL is passed in CANARIST_MOCK_URL (`http://127.0.0.1:PORT`).
Covers `client.responses.create` plain and streaming (openai), `client.messages.create` plain and
streaming, `messages.count_tokens` and errors (anthropic): every event the SDKs parse; tool calls
(`function_call`, `tool_use`) plain and streamed from the `mock-tools` profiles.
"""

import os
import unittest

import anthropic
import openai

BASE = os.environ["CANARIST_MOCK_URL"]
PROMPT = "How do I change the credit card on file for my account?"


def oai() -> openai.OpenAI:
    return openai.OpenAI(base_url=BASE + "/v1", api_key="sk-mock", max_retries=0)


def claude() -> anthropic.Anthropic:
    # The SDK appends /v1/messages to the base URL itself.
    return anthropic.Anthropic(base_url=BASE, api_key="sk-ant-mock", max_retries=0)


class ResponsesTest(unittest.TestCase):
    def test_plain(self):
        r = oai().responses.create(model="mock-stable", input=PROMPT, instructions="Be brief.")
        self.assertEqual(r.status, "completed")
        self.assertEqual(r.model, "mock-stable")
        self.assertTrue(r.output_text)
        self.assertEqual(r.output[0].type, "message")
        self.assertGreater(r.usage.input_tokens, 0)
        self.assertGreater(r.usage.output_tokens, 0)

    def test_streaming(self):
        types, text = [], ""
        stream = oai().responses.create(
            model="mock-stable", stream=True,
            input=[{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}])
        seqs = []
        final = None
        for event in stream:
            types.append(event.type)
            seqs.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                text += event.delta
            if event.type == "response.completed":
                final = event.response
        self.assertEqual(types[:4], ["response.created", "response.in_progress",
                                     "response.output_item.added", "response.content_part.added"])
        self.assertEqual(types[-4:], ["response.output_text.done", "response.content_part.done",
                                      "response.output_item.done", "response.completed"])
        self.assertEqual(seqs, list(range(len(seqs))))
        self.assertTrue(text)
        self.assertEqual(final.output_text, text)
        self.assertGreater(final.usage.output_tokens, 0)

    def test_stream_helper_assembles_the_text(self):
        with oai().responses.stream(model="mock-stable", input=PROMPT) as stream:
            for _ in stream:
                pass
            final = stream.get_final_response()
        self.assertTrue(final.output_text)

    def test_errors(self):
        with self.assertRaises(openai.NotFoundError):
            oai().responses.create(model="no-such-model", input="hi")
        with self.assertRaises(openai.RateLimitError):
            oai().responses.create(model="mock-429", input="hi")


class MessagesTest(unittest.TestCase):
    def test_plain(self):
        m = claude().messages.create(
            model="mock-stable", max_tokens=256, system="You are a support agent.",
            messages=[{"role": "user", "content": PROMPT}], metadata={"user_id": "u-1"})
        self.assertEqual(m.type, "message")
        self.assertEqual(m.role, "assistant")
        self.assertEqual(m.stop_reason, "end_turn")
        self.assertEqual(m.content[0].type, "text")
        self.assertTrue(m.content[0].text)
        self.assertGreater(m.usage.input_tokens, 0)
        self.assertGreater(m.usage.output_tokens, 0)

    def test_streaming_raw_events(self):
        stream = claude().messages.create(
            model="mock-stable", max_tokens=256, stream=True,
            messages=[{"role": "user", "content": [{"type": "text", "text": PROMPT}]}])
        types, text, usage = [], "", None
        for event in stream:
            types.append(event.type)
            if event.type == "content_block_delta":
                self.assertEqual(event.delta.type, "text_delta")
                text += event.delta.text
            if event.type == "message_delta":
                self.assertEqual(event.delta.stop_reason, "end_turn")
                usage = event.usage
        # The SDK consumes `ping` itself.
        self.assertEqual(types[:2], ["message_start", "content_block_start"])
        self.assertEqual(types[-3:], ["content_block_stop", "message_delta", "message_stop"])
        self.assertTrue(text)
        self.assertGreater(usage.output_tokens, 0)

    def test_stream_helper_assembles_the_message(self):
        with claude().messages.stream(
                model="mock-stable", max_tokens=256,
                messages=[{"role": "user", "content": PROMPT}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        self.assertTrue(text)
        self.assertEqual(final.content[0].text, text)
        self.assertEqual(final.stop_reason, "end_turn")

    def test_count_tokens(self):
        n = claude().messages.count_tokens(
            model="mock-stable", messages=[{"role": "user", "content": PROMPT}])
        self.assertGreater(n.input_tokens, 0)

    def test_errors(self):
        with self.assertRaises(anthropic.NotFoundError) as e:
            claude().messages.create(model="no-such-model", max_tokens=16,
                                     messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(e.exception.body["type"], "error")
        self.assertEqual(e.exception.body["error"]["type"], "not_found_error")
        with self.assertRaises(anthropic.RateLimitError):
            claude().messages.create(model="mock-429", max_tokens=16,
                                     messages=[{"role": "user", "content": "hi"}])
        with self.assertRaises(anthropic.BadRequestError):
            claude().messages.create(model="mock-stable", max_tokens=0,
                                     messages=[{"role": "user", "content": "hi"}])


SCHEMA = {"type": "object", "required": ["order_id"], "additionalProperties": False,
          "properties": {"order_id": {"type": "string", "examples": ["A-1042"]}}}


class ToolCallTest(unittest.TestCase):
    """`mock-tools` calls the declared tool with schema-valid arguments; `mock-tools-broken`
    breaks the schema in some answers (here: a missing `order_id`)."""

    def test_responses_function_call_plain_and_streamed(self):
        tools = [{"type": "function", "name": "lookup_order", "parameters": SCHEMA}]
        r = oai().responses.create(model="mock-tools", input="Where is my order?", tools=tools)
        call = r.output[0]
        self.assertEqual((call.type, call.name), ("function_call", "lookup_order"))
        self.assertEqual(call.arguments, '{"order_id":"A-1042"}')
        with oai().responses.stream(model="mock-tools", input="Where is my order?",
                                    tools=tools) as stream:
            deltas = "".join(e.delta for e in stream
                             if e.type == "response.function_call_arguments.delta")
            final = stream.get_final_response()
        self.assertEqual(deltas, call.arguments)
        self.assertEqual(final.output[0].arguments, call.arguments)

    def test_messages_tool_use_plain_and_streamed(self):
        tools = [{"name": "lookup_order", "description": "Look an order up.",
                  "input_schema": SCHEMA}]
        ask = [{"role": "user", "content": "Where is my order?"}]
        m = claude().messages.create(model="mock-tools", max_tokens=256, tools=tools,
                                     messages=ask)
        self.assertEqual(m.stop_reason, "tool_use")
        block = m.content[0]
        self.assertEqual((block.type, block.name, block.input),
                         ("tool_use", "lookup_order", {"order_id": "A-1042"}))
        with claude().messages.stream(model="mock-tools", max_tokens=256, tools=tools,
                                      messages=ask) as stream:
            final = stream.get_final_message()
        self.assertEqual(final.content[0].input, {"order_id": "A-1042"})
        self.assertEqual(final.stop_reason, "tool_use")

    def test_the_broken_profile_breaks_the_schema_sometimes(self):
        tools = [{"name": "lookup_order", "input_schema": SCHEMA}]
        inputs = [claude().messages.create(
            model="mock-tools-broken", max_tokens=64, tools=tools,
            messages=[{"role": "user", "content": f"Where is order {i}?"}]).content[0].input
            for i in range(40)]
        self.assertIn({}, inputs)
        self.assertIn({"order_id": "A-1042"}, inputs)


if __name__ == "__main__":
    unittest.main(verbosity=2)
