"""The Responses API and Anthropic's Messages API as seen by the official SDKs.

Run by scripts/e2e-python-apis.sh twice over: against `canarist mock-upstream` directly
(CANARIST_MOCK_URL, `http://127.0.0.1:PORT`) and against the canarist gateway in front of that
mock (CANARIST_GATEWAY_URL; deployments `responses-bot` on the OpenAI API and `claude-bot` on
the Anthropic API, both shadowed to a candidate, `responses-tools`, `claude-tools` and
`claude-tools-broken` on the mock's tool profiles, `claude-429` and `responses-429` answering 429).
Covers `client.responses.create` plain and streaming (openai), `client.messages.create` plain
and streaming, `messages.count_tokens` and errors (anthropic): every event the SDKs parse; tool
calls (`function_call`, `tool_use`) plain and streamed from the `mock-tools` profiles; through
the gateway also the variant header.
"""

import os
import unittest

import anthropic
import openai

PROMPT = "How do I change the credit card on file for my account?"
class Target:
    """Where the SDKs point and which models they ask for."""

    def __init__(self, base, responses_model, messages_model, limited_responses,
                 limited_messages, tools, gateway):
        self.base = base
        # (Responses tools model, Messages tools model, Messages broken-tools model)
        self.tools = tools
        self.responses_model = responses_model
        self.messages_model = messages_model
        self.limited_responses = limited_responses
        self.limited_messages = limited_messages
        self.gateway = gateway

    def oai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key="sk-mock", max_retries=0)

    def claude(self) -> anthropic.Anthropic:
        # The SDK appends /v1/messages to the base URL itself.
        return anthropic.Anthropic(base_url=self.base, api_key="sk-ant-mock", max_retries=0)


def target() -> Target:
    gateway = os.environ.get("CANARIST_GATEWAY_URL")
    if gateway:
        return Target(gateway, "responses-bot", "claude-bot", "responses-429", "claude-429",
                      ("responses-tools", "claude-tools", "claude-tools-broken"), True)
    return Target(os.environ["CANARIST_MOCK_URL"], "mock-stable", "mock-stable", "mock-429",
                  "mock-429", ("mock-tools", "mock-tools", "mock-tools-broken"), False)


T = target()


class ResponsesTest(unittest.TestCase):
    def test_plain(self):
        raw = T.oai().responses.with_raw_response.create(
            model=T.responses_model, input=PROMPT, instructions="Be brief.", user="u-1")
        if T.gateway:
            self.assertEqual(raw.headers["x-canarist-variant"], "stable")
            self.assertEqual(raw.headers["x-canarist-deployment"], T.responses_model)
        r = raw.parse()
        self.assertEqual(r.status, "completed")
        self.assertEqual(r.model, "mock-stable")
        self.assertTrue(r.output_text)
        self.assertEqual(r.output[0].type, "message")
        self.assertGreater(r.usage.input_tokens, 0)
        self.assertGreater(r.usage.output_tokens, 0)

    def test_streaming(self):
        types, text = [], ""
        stream = T.oai().responses.create(
            model=T.responses_model, stream=True, user="u-2",
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
        with T.oai().responses.stream(model=T.responses_model, input=PROMPT) as stream:
            for _ in stream:
                pass
            final = stream.get_final_response()
        self.assertTrue(final.output_text)

    def test_errors(self):
        with self.assertRaises(openai.NotFoundError):
            T.oai().responses.create(model="no-such-model", input="hi")
        with self.assertRaises(openai.RateLimitError):
            T.oai().responses.create(model=T.limited_responses, input="hi")


class MessagesTest(unittest.TestCase):
    def test_plain(self):
        raw = T.claude().messages.with_raw_response.create(
            model=T.messages_model, max_tokens=256, system="You are a support agent.",
            messages=[{"role": "user", "content": PROMPT}], metadata={"user_id": "u-1"})
        if T.gateway:
            self.assertEqual(raw.headers["x-canarist-variant"], "stable")
            self.assertEqual(raw.headers["x-canarist-deployment"], T.messages_model)
        m = raw.parse()
        self.assertEqual(m.type, "message")
        self.assertEqual(m.role, "assistant")
        self.assertEqual(m.stop_reason, "end_turn")
        self.assertEqual(m.content[0].type, "text")
        self.assertTrue(m.content[0].text)
        self.assertGreater(m.usage.input_tokens, 0)
        self.assertGreater(m.usage.output_tokens, 0)

    def test_streaming_raw_events(self):
        stream = T.claude().messages.create(
            model=T.messages_model, max_tokens=256, stream=True,
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
        with T.claude().messages.stream(
                model=T.messages_model, max_tokens=256,
                messages=[{"role": "user", "content": PROMPT}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        self.assertTrue(text)
        self.assertEqual(final.content[0].text, text)
        self.assertEqual(final.stop_reason, "end_turn")

    def test_count_tokens(self):
        n = T.claude().messages.count_tokens(
            model=T.messages_model, messages=[{"role": "user", "content": PROMPT}])
        self.assertGreater(n.input_tokens, 0)

    def test_errors(self):
        with self.assertRaises(anthropic.NotFoundError) as e:
            T.claude().messages.create(model="no-such-model", max_tokens=16,
                                       messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(e.exception.body["type"], "error")
        self.assertEqual(e.exception.body["error"]["type"], "not_found_error")
        with self.assertRaises(anthropic.RateLimitError):
            T.claude().messages.create(model=T.limited_messages, max_tokens=16,
                                       messages=[{"role": "user", "content": "hi"}])
        with self.assertRaises(anthropic.BadRequestError) as e:
            T.claude().messages.create(model=T.messages_model, max_tokens=0,
                                       messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(e.exception.body["error"]["type"], "invalid_request_error")


SCHEMA = {"type": "object", "required": ["order_id"], "additionalProperties": False,
          "properties": {"order_id": {"type": "string", "examples": ["A-1042"]}}}


class ToolCallTest(unittest.TestCase):
    """`mock-tools` calls the declared tool with schema-valid arguments; `mock-tools-broken`
    breaks the schema in some answers (here: a missing `order_id`)."""

    def test_responses_function_call_plain_and_streamed(self):
        model = T.tools[0]
        tools = [{"type": "function", "name": "lookup_order", "parameters": SCHEMA}]
        r = T.oai().responses.create(model=model, input="Where is my order?", tools=tools)
        call = r.output[0]
        self.assertEqual((call.type, call.name), ("function_call", "lookup_order"))
        self.assertEqual(call.arguments, '{"order_id":"A-1042"}')
        with T.oai().responses.stream(model=model, input="Where is my order?",
                                      tools=tools) as stream:
            deltas = "".join(e.delta for e in stream
                             if e.type == "response.function_call_arguments.delta")
            final = stream.get_final_response()
        self.assertEqual(deltas, call.arguments)
        self.assertEqual(final.output[0].arguments, call.arguments)

    def test_messages_tool_use_plain_and_streamed(self):
        model = T.tools[1]
        tools = [{"name": "lookup_order", "description": "Look an order up.",
                  "input_schema": SCHEMA}]
        ask = [{"role": "user", "content": "Where is my order?"}]
        m = T.claude().messages.create(model=model, max_tokens=256, tools=tools, messages=ask)
        self.assertEqual(m.stop_reason, "tool_use")
        block = m.content[0]
        self.assertEqual((block.type, block.name, block.input),
                         ("tool_use", "lookup_order", {"order_id": "A-1042"}))
        with T.claude().messages.stream(model=model, max_tokens=256, tools=tools,
                                        messages=ask) as stream:
            final = stream.get_final_message()
        self.assertEqual(final.content[0].input, {"order_id": "A-1042"})
        self.assertEqual(final.stop_reason, "tool_use")

    def test_the_broken_profile_breaks_the_schema_sometimes(self):
        tools = [{"name": "lookup_order", "input_schema": SCHEMA}]
        inputs = [T.claude().messages.create(
            model=T.tools[2], max_tokens=64, tools=tools,
            messages=[{"role": "user", "content": f"Where is order {i}?"}]).content[0].input
            for i in range(40)]
        self.assertIn({}, inputs)
        self.assertIn({"order_id": "A-1042"}, inputs)


if __name__ == "__main__":
    unittest.main(verbosity=2)
