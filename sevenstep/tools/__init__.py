"""What a learner reaches for after a run: predictions on new images, a learning rate to try.

predict.py   `sevenstep predict`: a saved run's model on new images, through the run's own preprocessing
lr_find.py   `sevenstep lr-find`: fastai's learning-rate finder on a recipe's Learner
"""
