"""LLaVA adapter on a tiny LLaVA built in code: equals the model's own forward; loads by path."""
import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from spec_vlm_control.core.models.llava import LlavaAdapter
from spec_vlm_control.core.models.loading import load_model
from tiny_models import synthetic_image, tiny_qwen2vl_tokenizer
from spec_vlm_control.core.prompts import ProcessorPrompts

torch.set_num_threads(1)

TEMPLATE = ("{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}"
            "{% if c['type'] == 'image' %}<image>{{ '\\n' }}{% else %}{{ c['text'] }}{% endif %}"
            "{% endfor %}{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")
SIDE, PATCH = 16, 4


def tiny_llava(seed=0, dtype=torch.float64):
    tokenizer = tiny_qwen2vl_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tokenizer.chat_template = TEMPLATE
    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", image_size=SIDE, patch_size=PATCH,
                           hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2),
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=64,
                         intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, initializer_range=0.08,
                         eos_token_id=tokenizer.eos_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2, vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).to(dtype).eval()
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": SIDE},
                                            crop_size={"height": SIDE, "width": SIDE})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               patch_size=PATCH, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=TEMPLATE)
    return model, processor


def reference(model, prompt, continuation=()):
    ids = torch.cat([prompt.input_ids, torch.tensor([list(continuation)], dtype=torch.long)], 1)
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=True, **prompt.vision)


def test_prompt_layout():
    model, processor = tiny_llava()
    prompt = ProcessorPrompts(processor).build("go to the red ball", synthetic_image(0))
    ids = prompt.input_ids[0].tolist()
    image = model.config.image_token_id
    # CLIP: (16/4)^2 patches + CLS, minus CLS for the "default" feature strategy
    assert ids.count(image) == (SIDE // PATCH) ** 2
    assert prompt.vision["pixel_values"].shape == (1, 3, SIDE, SIDE)
    assert prompt.text.startswith("USER: <image>\ngo to the red ball")
    assert prompt.text.endswith("ASSISTANT:")


def test_layers_decode_and_crop_match_forward():
    model, processor = tiny_llava(seed=1)
    adapter = LlavaAdapter(model)
    prompt = ProcessorPrompts(processor).build("turn left", synthetic_image(1))
    n = prompt.input_ids.shape[1]
    state = adapter.prefill(prompt)
    layers = {}
    logits = adapter.extend(state, [70, 71, 72], on_layer=lambda i, h: layers.__setitem__(i, h))
    ref = reference(model, prompt, [70, 71, 72])
    assert (logits - ref.logits[0, n - 1:]).abs().max() <= 1e-12
    assert (layers[1] - ref.hidden_states[2][0, n - 1:]).abs().max() <= 1e-12
    adapter.crop(state, n, pending=99)          # accept none of the block, correct to 99
    logits = adapter.extend(state, [100])
    assert (logits - reference(model, prompt, [99, 100]).logits[0, n:]).abs().max() <= 1e-12


def test_greedy_equals_generate_and_loads_by_path(tmp_path):
    model, processor = tiny_llava(seed=2, dtype=torch.float32)
    model.save_pretrained(tmp_path)
    processor.tokenizer.save_pretrained(tmp_path)
    processor.image_processor.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert isinstance(loaded.adapter, LlavaAdapter)
    prompt = loaded.prompts.build("stop", synthetic_image(2))
    assert torch.equal(prompt.input_ids,
                       ProcessorPrompts(processor).build("stop", synthetic_image(2)).input_ids)
    state = loaded.adapter.prefill(prompt)
    ours = []
    for _ in range(12):
        token = int(loaded.adapter.extend(state, [])[-1].argmax())
        loaded.adapter.crop(state, state.cache_length, pending=token)
        ours.append(token)
    with torch.no_grad():
        out = loaded.adapter.model.generate(**prompt.vision, input_ids=prompt.input_ids,
                                            do_sample=False, max_new_tokens=12, min_new_tokens=12)
    assert ours == out[0, prompt.input_ids.shape[1]:].tolist()
