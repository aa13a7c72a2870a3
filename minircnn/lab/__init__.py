"""Code only the lessons use: cached experiment runs (:mod:`.experiments`), the R-CNN SVMs of lesson 15
(:mod:`.svm`), and a timing helper (:mod:`.timing`). The detector itself never imports it."""
