// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title Swarm-learning registry
/// @notice Records, per training round, each registered institution's model CID and validation
/// loss, evaluates the early-stopping rule on chain, then records each institution's deep-features
/// CID. The owner registers institutions and then closes registration (`closeRegistration`); the
/// set of institutions (who also attest reward allocations) is fixed from then on, and training
/// can only start after it is fixed.
/// @dev Stopping rule (evaluated when a round closes): the round's mean validation loss is the
/// integer mean of the losses submitted in it; the best round is the first round with the lowest
/// mean (like numpy.argmin); training stops once `round - bestRound >= patience` (the minimum is
/// not among the last `patience` rounds) or `round + 1 >= maxRounds`. Losses are unsigned
/// fixed-point integers (ddval uses 1e18 per unit) and at most `maxLoss`, so no sum can overflow.
/// A round closes when every institution has submitted, or, after `roundTimeout` seconds, by
/// anyone's `closeExpiredRound`: then the mean is over the institutions that did submit (silent
/// ones are skipped; a round nobody submitted never becomes the best one). Deep features may be
/// submitted for `roundTimeout` seconds after training stopped.
contract SwarmRegistry is Ownable {
    /// @notice Largest accepted round timeout (one year): a larger one is a mistake.
    uint256 public constant MAX_TIMEOUT = 365 days;
    /// @notice Largest accepted loss bound (1e36, i.e. a loss of 1e18 at ddval's scale).
    uint256 public constant MAX_LOSS_LIMIT = 1e36;

    error ZeroAddress();
    error AlreadyRegistered(address account);
    error RegistrationClosed();
    error RegistrationOpen();
    error NoInstitutions();
    error NotInstitution(address account);
    error InvalidStoppingRule(uint256 patience, uint256 maxRounds);
    error InvalidMaxLoss(uint256 maxLoss);
    error InvalidTimeout(uint256 timeout);
    error TrainingHasStopped();
    error TrainingNotStopped();
    error WrongRound(uint256 expected, uint256 got);
    error RoundExpired(uint256 round, uint256 deadline);
    error RoundNotExpired(uint256 round, uint256 deadline);
    error LossOutOfRange(uint256 loss, uint256 maxLoss);
    error AlreadySubmitted(address institution, uint256 round);
    error EmptyCid();
    error FeaturesAlreadySubmitted(address institution);
    error FeaturesClosed(uint256 deadline);
    error FeaturesOpen(uint256 deadline);
    error NoBestRound();

    event InstitutionRegistered(address indexed institution, uint256 index);
    event RegistrationClosedAt(uint256 institutions, uint256 timestamp);
    event RoundSubmitted(uint256 indexed round, address indexed institution, bytes modelCid, uint256 valLoss);
    event RoundClosed(uint256 indexed round, uint256 meanLoss, uint256 submissions, bool isBest);
    event TrainingStopped(uint256 lastRound, uint256 bestRound, uint256 bestMeanLoss, bool patienceExhausted);
    event FeaturesSubmitted(address indexed institution, bytes featuresCid);

    uint256 public immutable patience;
    uint256 public immutable maxRounds;
    uint256 public immutable maxLoss;
    uint256 public immutable roundTimeout;

    address[] private _institutions;
    mapping(address => uint256) private _indexPlusOne;
    bool public registrationClosed;

    /// @notice The round that is being filled (all earlier rounds are closed).
    uint256 public currentRound;
    /// @notice When `currentRound` opened; it can be closed without the silent ones `roundTimeout` later.
    uint256 public roundOpenedAt;
    /// @notice How many institutions have submitted `currentRound` so far.
    uint256 public submittedInRound;
    uint256 private _lossSum;

    bool public stopped;
    uint256 public stoppedAt;
    uint256 public bestRound;
    uint256 public bestMeanLoss = type(uint256).max;
    uint256 public featuresSubmitted;

    mapping(uint256 round => mapping(address institution => bytes cid)) private _modelCid;
    mapping(uint256 round => mapping(address institution => uint256 loss)) private _valLoss;
    mapping(uint256 round => uint256 mean) private _roundMeanLoss;
    mapping(address institution => bytes cid) private _featuresCid;

    modifier onlyInstitution() {
        if (_indexPlusOne[msg.sender] == 0) revert NotInstitution(msg.sender);
        _;
    }

    constructor(address initialOwner, uint256 patience_, uint256 maxRounds_, uint256 maxLoss_, uint256 roundTimeout_)
        Ownable(initialOwner)
    {
        if (patience_ == 0 || maxRounds_ == 0) revert InvalidStoppingRule(patience_, maxRounds_);
        if (maxLoss_ == 0 || maxLoss_ > MAX_LOSS_LIMIT) revert InvalidMaxLoss(maxLoss_);
        if (roundTimeout_ == 0 || roundTimeout_ > MAX_TIMEOUT) revert InvalidTimeout(roundTimeout_);
        patience = patience_;
        maxRounds = maxRounds_;
        maxLoss = maxLoss_;
        roundTimeout = roundTimeout_;
    }

    // ---------------------------------------------------------------- registration

    /// @notice Register an institution (owner only, while registration is open).
    function registerInstitution(address institution) external onlyOwner {
        if (institution == address(0)) revert ZeroAddress();
        if (registrationClosed) revert RegistrationClosed();
        if (_indexPlusOne[institution] != 0) revert AlreadyRegistered(institution);
        _institutions.push(institution);
        _indexPlusOne[institution] = _institutions.length;
        emit InstitutionRegistered(institution, _institutions.length - 1);
    }

    /// @notice Fix the set of institutions for good and open round 0 (owner only, once).
    function closeRegistration() external onlyOwner {
        if (registrationClosed) revert RegistrationClosed();
        if (_institutions.length == 0) revert NoInstitutions();
        registrationClosed = true;
        roundOpenedAt = block.timestamp;
        emit RegistrationClosedAt(_institutions.length, block.timestamp);
    }

    function institutionCount() external view returns (uint256) {
        return _institutions.length;
    }

    function institutionAt(uint256 index) external view returns (address) {
        return _institutions[index];
    }

    function isInstitution(address account) external view returns (bool) {
        return _indexPlusOne[account] != 0;
    }

    // ---------------------------------------------------------------- rounds

    /// @notice Time after which `currentRound` can be closed without the institutions that are silent.
    function roundDeadline() public view returns (uint256) {
        return roundOpenedAt + roundTimeout;
    }

    /// @notice Record this institution's model CID and validation loss for `round`.
    /// @dev `round` must equal `currentRound` (no skipping, no replays, no double submissions).
    function submitRound(uint256 round, bytes calldata cid, uint256 loss) external onlyInstitution {
        if (!registrationClosed) revert RegistrationOpen();
        if (stopped) revert TrainingHasStopped();
        if (round != currentRound) revert WrongRound(currentRound, round);
        if (block.timestamp >= roundDeadline()) revert RoundExpired(round, roundDeadline());
        if (cid.length == 0) revert EmptyCid();
        if (loss > maxLoss) revert LossOutOfRange(loss, maxLoss);
        if (_modelCid[round][msg.sender].length != 0) revert AlreadySubmitted(msg.sender, round);
        _modelCid[round][msg.sender] = cid;
        _valLoss[round][msg.sender] = loss;
        _lossSum += loss;
        submittedInRound += 1;
        emit RoundSubmitted(round, msg.sender, cid, loss);
        if (submittedInRound == _institutions.length) _closeRound(round);
    }

    /// @notice Close `currentRound` after its deadline with the submissions it has (anyone may call).
    function closeExpiredRound() external {
        if (!registrationClosed) revert RegistrationOpen();
        if (stopped) revert TrainingHasStopped();
        if (block.timestamp < roundDeadline()) revert RoundNotExpired(currentRound, roundDeadline());
        _closeRound(currentRound);
    }

    function _closeRound(uint256 round) private {
        uint256 submissions = submittedInRound;
        uint256 mean = submissions == 0 ? type(uint256).max : _lossSum / submissions;
        _roundMeanLoss[round] = mean;
        // Strict: on ties the earlier round stays the best one, as in ddval.train (numpy.argmin).
        bool isBest = mean < bestMeanLoss;
        if (isBest) {
            bestMeanLoss = mean;
            bestRound = round;
        }
        emit RoundClosed(round, mean, submissions, isBest);
        _lossSum = 0;
        submittedInRound = 0;
        currentRound = round + 1;
        roundOpenedAt = block.timestamp;
        bool patienceExhausted = round - bestRound >= patience;
        if (patienceExhausted || round + 1 >= maxRounds) {
            stopped = true;
            stoppedAt = block.timestamp;
            emit TrainingStopped(round, bestRound, bestMeanLoss, patienceExhausted);
        }
    }

    /// @notice Number of closed rounds.
    function roundsClosed() external view returns (uint256) {
        return currentRound;
    }

    function modelCid(uint256 round, address institution) external view returns (bytes memory) {
        return _modelCid[round][institution];
    }

    function valLoss(uint256 round, address institution) external view returns (uint256) {
        return _valLoss[round][institution];
    }

    function roundMeanLoss(uint256 round) external view returns (uint256) {
        return _roundMeanLoss[round];
    }

    // ---------------------------------------------------------------- deep features

    /// @notice Time until which deep features can be submitted (training must have stopped).
    function featuresDeadline() public view returns (uint256) {
        return stoppedAt + roundTimeout;
    }

    /// @notice Record this institution's deep-features CID, once, after training has stopped.
    function submitFeatures(bytes calldata cid) external onlyInstitution {
        if (!stopped) revert TrainingNotStopped();
        if (block.timestamp >= featuresDeadline()) revert FeaturesClosed(featuresDeadline());
        if (cid.length == 0) revert EmptyCid();
        if (_featuresCid[msg.sender].length != 0) revert FeaturesAlreadySubmitted(msg.sender);
        _featuresCid[msg.sender] = cid;
        featuresSubmitted += 1;
        emit FeaturesSubmitted(msg.sender, cid);
    }

    function featuresCid(address institution) external view returns (bytes memory) {
        return _featuresCid[institution];
    }

    // ---------------------------------------------------------------- the training record

    /// @notice Digest of the finished training that reward allocations are attested against:
    /// `keccak256(abi.encode(registry, bestRound, model CIDs of the best round, features CIDs))`,
    /// both lists in registration order (an empty CID for an institution that submitted none).
    /// Reverts until training has stopped with a best round and the features are final (all
    /// submitted, or their deadline passed), so that the digest can no longer change.
    function trainingDigest() external view returns (bytes32) {
        if (!stopped) revert TrainingNotStopped();
        if (bestMeanLoss == type(uint256).max) revert NoBestRound();
        uint256 n = _institutions.length;
        if (featuresSubmitted < n && block.timestamp < featuresDeadline()) revert FeaturesOpen(featuresDeadline());
        bytes[] memory models = new bytes[](n);
        bytes[] memory features = new bytes[](n);
        for (uint256 i = 0; i < n; ++i) {
            models[i] = _modelCid[bestRound][_institutions[i]];
            features[i] = _featuresCid[_institutions[i]];
        }
        return keccak256(abi.encode(address(this), bestRound, models, features));
    }
}
