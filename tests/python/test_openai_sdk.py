"""canarist as seen by the official OpenAI Python SDK.

Run by scripts/e2e-python.sh against `canarist demo --keep-running`, whose last output line (a JSON
object with gateway_url, model, admin_key, viewer_key, dashboard_url) is passed in the
CANARIST_DEMO environment variable. Covers a plain and a streaming chat completion, an error
(an unknown model is a NotFoundError), and the variant header read from the raw response.
"""

import json
import os
import unittest

import openai

DEMO = json.loads(os.environ["CANARIST_DEMO"])
MODEL = DEMO["model"]
# A prompt of the mock upstream's dataset (fixtures/datasets/support.jsonl): its answers are known.
PROMPT = "How do I change the credit card on file for my account?"


def client() -> openai.OpenAI:
    # canarist forwards the key to the upstream; the mock upstream ignores it.
    return openai.OpenAI(base_url=DEMO["gateway_url"] + "/v1", api_key="sk-demo", max_retries=0)


def messages():
    return [
        {"role": "system", "content": "You are the support assistant of a SaaS company."},
        {"role": "user", "content": PROMPT},
    ]


class OpenAISdkTest(unittest.TestCase):
    def test_plain_chat_completion(self):
        c = client().chat.completions.create(model=MODEL, messages=messages(), user="py-plain")
        self.assertEqual(len(c.choices), 1)
        choice = c.choices[0]
        self.assertEqual(choice.finish_reason, "stop")
        self.assertEqual(choice.message.role, "assistant")
        self.assertTrue(choice.message.content)
        self.assertIn("card", choice.message.content.lower())
        self.assertGreater(c.usage.total_tokens, 0)

    def test_streaming_chat_completion(self):
        stream = client().chat.completions.create(
            model=MODEL, messages=messages(), user="py-stream", stream=True
        )
        parts, finish, chunks = [], None, 0
        for chunk in stream:
            chunks += 1
            for choice in chunk.choices:
                if choice.delta.content:
                    parts.append(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
        text = "".join(parts)
        self.assertGreater(chunks, 2, "the answer arrives in several chunks")
        self.assertEqual(finish, "stop")
        self.assertIn("card", text.lower())
        # Same unit key, same prompt: the stream carries the same words as a plain call.
        plain = client().chat.completions.create(model=MODEL, messages=messages(), user="py-stream")
        self.assertEqual(text, plain.choices[0].message.content)

    def test_unknown_model_is_not_found(self):
        with self.assertRaises(openai.NotFoundError) as caught:
            client().chat.completions.create(model="no-such-model", messages=messages())
        self.assertEqual(caught.exception.status_code, 404)

    def test_variant_header_from_the_raw_response(self):
        raw = client().chat.completions.with_raw_response.create(
            model=MODEL, messages=messages(), user="py-raw"
        )
        self.assertIn(raw.headers.get("x-canarist-variant"), ("stable", "candidate"))
        self.assertEqual(raw.headers.get("x-canarist-deployment"), "support-bot")
        self.assertTrue(raw.headers.get("x-canarist-stage"))
        completion = raw.parse()
        self.assertTrue(completion.choices[0].message.content)


if __name__ == "__main__":
    unittest.main(verbosity=2)
