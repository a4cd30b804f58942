module github.com/lemonade-lb/lemonade/bench/fairness

go 1.26

require go.uber.org/goleak v1.3.0
