"""A candidate on the other API, as the official SDKs see it (issue 16 item 3).

Run by scripts/e2e-python-apis.sh against the canarist gateway in front of the mock
(CANARIST_GATEWAY_URL). Deployments: `gpt-to-claude` (stable on the OpenAI API, its candidate
`claude` on the Anthropic API, live at 100%: every request is served by the candidate through
a translation) and `claude-to-gpt` (the reverse, candidate `gpt`); `gpt-to-claude-tools` and
`claude-to-gpt-tools` the same on the mock's tool profile. The `openai` SDK's chat completions
(plain, streamed with usage, a tool call) must read the Anthropic candidate's answers, and the
`anthropic` SDK's messages (plain, the stream helper, a tool call) the chat candidate's; a
field that cannot be translated is each SDK's own BadRequestError.
"""

import json
import os
import unittest

import anthropic
import openai

BASE = os.environ["CANARIST_GATEWAY_URL"]
PROMPT = "How do I change the credit card on file for my account?"
SCHEMA = {"type": "object", "required": ["order_id"],
          "properties": {"order_id": {"type": "string"}}}


def oai() -> openai.OpenAI:
    return openai.OpenAI(base_url=BASE + "/v1", api_key="sk-mock", max_retries=0)


def claude() -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=BASE, api_key="sk-ant-mock", max_retries=0)


class ChatClientClaudeCandidate(unittest.TestCase):
    def test_plain(self):
        raw = oai().chat.completions.with_raw_response.create(
            model="gpt-to-claude", user="u-1",
            messages=[{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": PROMPT}])
        self.assertEqual(raw.headers["x-canarist-variant"], "claude")
        r = raw.parse()
        self.assertEqual(r.object, "chat.completion")
        self.assertTrue(r.choices[0].message.content)
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertGreater(r.usage.prompt_tokens, 0)
        self.assertGreater(r.usage.completion_tokens, 0)

    def test_streaming_with_usage(self):
        text, finish, usage = "", None, None
        for chunk in oai().chat.completions.create(
                model="gpt-to-claude", stream=True, stream_options={"include_usage": True},
                messages=[{"role": "user", "content": PROMPT}]):
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                text += c.delta.content or ""
                finish = c.finish_reason or finish
        self.assertTrue(text)
        self.assertEqual(finish, "stop")
        self.assertGreater(usage.completion_tokens, 0)

    def test_stream_helper_and_a_tool_call(self):
        tools = [{"type": "function", "function": {"name": "lookup_order", "parameters": SCHEMA}}]
        ask = [{"role": "user", "content": "Where is my order?"}]
        r = oai().chat.completions.create(model="gpt-to-claude-tools", tools=tools, messages=ask)
        call = r.choices[0].message.tool_calls[0]
        self.assertEqual(r.choices[0].finish_reason, "tool_calls")
        self.assertEqual(call.function.name, "lookup_order")
        args = json.loads(call.function.arguments)
        self.assertIsInstance(args["order_id"], str)
        with oai().chat.completions.stream(model="gpt-to-claude-tools", tools=tools,
                                           messages=ask) as stream:
            final = stream.get_final_completion()
        streamed = final.choices[0].message.tool_calls[0]
        self.assertEqual(streamed.function.name, "lookup_order")
        self.assertEqual(json.loads(streamed.function.arguments), args)
        # The tool's result goes back as a tool message.
        follow = ask + [r.choices[0].message.model_dump(exclude_none=True),
                        {"role": "tool", "tool_call_id": call.id, "content": "shipped"}]
        again = oai().chat.completions.create(model="gpt-to-claude", messages=follow)
        self.assertTrue(again.choices[0].message.content)

    def test_an_untranslatable_field_is_a_bad_request(self):
        with self.assertRaises(openai.BadRequestError) as e:
            oai().chat.completions.create(model="gpt-to-claude", n=2,
                                          messages=[{"role": "user", "content": "hi"}])
        self.assertEqual(e.exception.body["param"], "n")
        self.assertEqual(e.exception.body["code"], "untranslatable_parameter")


class MessagesClientChatCandidate(unittest.TestCase):
    def test_plain(self):
        raw = claude().messages.with_raw_response.create(
            model="claude-to-gpt", max_tokens=256, system="Be brief.",
            messages=[{"role": "user", "content": PROMPT}], metadata={"user_id": "u-1"})
        self.assertEqual(raw.headers["x-canarist-variant"], "gpt")
        m = raw.parse()
        self.assertEqual(m.type, "message")
        self.assertEqual(m.stop_reason, "end_turn")
        self.assertTrue(m.content[0].text)
        self.assertGreater(m.usage.input_tokens, 0)
        self.assertGreater(m.usage.output_tokens, 0)

    def test_stream_helper(self):
        with claude().messages.stream(model="claude-to-gpt", max_tokens=256,
                                      messages=[{"role": "user", "content": PROMPT}]) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        self.assertTrue(text)
        self.assertEqual(final.content[0].text, text)
        self.assertEqual(final.stop_reason, "end_turn")
        self.assertGreater(final.usage.output_tokens, 0)
        self.assertGreater(final.usage.input_tokens, 0)

    def test_tool_use(self):
        tools = [{"name": "lookup_order", "input_schema": SCHEMA}]
        ask = [{"role": "user", "content": "Where is my order?"}]
        m = claude().messages.create(model="claude-to-gpt-tools", max_tokens=256, tools=tools,
                                     messages=ask)
        self.assertEqual(m.stop_reason, "tool_use")
        block = m.content[-1]
        self.assertEqual((block.type, block.name), ("tool_use", "lookup_order"))
        self.assertIsInstance(block.input["order_id"], str)
        with claude().messages.stream(model="claude-to-gpt-tools", max_tokens=256, tools=tools,
                                      messages=ask) as stream:
            final = stream.get_final_message()
        self.assertEqual(final.content[-1].input, block.input)
        self.assertEqual(final.stop_reason, "tool_use")
        follow = ask + [{"role": "assistant", "content": [b.model_dump() for b in m.content]},
                        {"role": "user", "content": [{"type": "tool_result",
                                                      "tool_use_id": block.id,
                                                      "content": "shipped"}]}]
        again = claude().messages.create(model="claude-to-gpt", max_tokens=64, messages=follow)
        self.assertTrue(again.content[0].text)

    def test_an_untranslatable_field_is_a_bad_request(self):
        with self.assertRaises(anthropic.BadRequestError) as e:
            claude().messages.create(model="claude-to-gpt", max_tokens=16,
                                     extra_body={"top_k": 3},
                                     messages=[{"role": "user", "content": "hi"}])
        self.assertIn("top_k", str(e.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
