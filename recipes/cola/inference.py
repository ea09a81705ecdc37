"""ColaPredictor: a trained checkpoint answers whether a sentence is acceptable English (write-up 000).

    python -m recipes.cola.inference outputs/cola/<date>/<time>/models/best-checkpoint.ckpt "The boy is sitting on the bench"

Needs only the model class and the checkpoint: no Trainer, no training data.
"""

import sys

import torch

from recipes.cola.data import DataModule
from recipes.cola.model import ColaModel


class ColaPredictor:
    def __init__(self, model_path):
        self.model_path = model_path
        # loading the trained model
        self.model = ColaModel.load_from_checkpoint(model_path)
        # keep the model in eval mode
        self.model.eval()
        self.model.freeze()
        self.processor = DataModule(self.model.hparams["model_name"])
        self.softmax = torch.nn.Softmax(dim=0)
        self.labels = ["unacceptable", "acceptable"]

    def predict(self, text):
        # text => run time input
        inference_sample = {"sentence": text}
        # tokenizing the input
        processed = self.processor.tokenize_data(inference_sample)
        # predictions
        logits = self.model(
            torch.tensor([processed["input_ids"]]),
            torch.tensor([processed["attention_mask"]]),
        )
        scores = self.softmax(logits[0]).tolist()
        predictions = []
        for score, label in zip(scores, self.labels):
            predictions.append({"label": label, "score": score})
        return predictions


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(f"usage: python -m recipes.cola.inference CHECKPOINT [SENTENCE ...]\n{__doc__}")
    predictor = ColaPredictor(sys.argv[1])
    for sentence in sys.argv[2:] or ["The boy is sitting on the bench"]:
        print(sentence, predictor.predict(sentence))
